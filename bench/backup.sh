#!/bin/sh
# bench/backup.sh [homes] [MB per home] measures restic backups the way the
# gateway runs them: one hubgate/restic helper container per home, the
# home volume mounted read-only, the repository a host folder, no cache.
# It fills N volumes (default 10) with M MB (default 100) of random data,
# times the first backup of all of them and the repository's size, then
# changes 1 MB in each home and times the incremental backup. Volumes and
# the repository are removed at the end. Needs Docker and images/restic.
set -eu
n=${1:-10}
mb=${2:-100}
img=hubgate/restic:latest
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/images/restic/build.sh" "$img" >/dev/null
tag=hgbench$$
work=$(mktemp -d)
repo=$work/repo
mkdir -p "$repo"
printf 'bench-password' >"$work/pw"
cleanup() {
	for i in $(seq 1 "$n"); do docker volume rm -f "$tag-home-u$i" >/dev/null 2>&1 || true; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

helper() { # helper VOLUME(or -) ARGS...
	vol=$1; shift
	mnt=""
	[ "$vol" = - ] || mnt="-v $vol:/home/$vol:ro"
	# shellcheck disable=SC2086
	docker run --rm --network none --cap-drop ALL --cap-add DAC_READ_SEARCH --cap-add DAC_OVERRIDE \
		-e RESTIC_REPOSITORY=/repo -e RESTIC_PASSWORD_FILE=/pw -v "$repo:/repo" -v "$work/pw:/pw:ro" $mnt \
		--entrypoint /usr/bin/restic "$img" --no-cache "$@"
}

helper - init -q
for i in $(seq 1 "$n"); do
	docker volume create "$tag-home-u$i" >/dev/null
	# random data: no deduplication between homes (the worst case)
	head -c "$((mb * 1024 * 1024))" /dev/urandom >"$work/data"
	docker cp "$work/data" "$(docker create -v "$tag-home-u$i:/h" --name "$tag-fill" "$img" /usr/bin/restic)":/h/data.bin >/dev/null
	docker rm "$tag-fill" >/dev/null
done
rm -f "$work/data"

t0=$(date +%s.%N)
for i in $(seq 1 "$n"); do helper "$tag-home-u$i" backup -q --host bench --tag "user=u$i" "/home/$tag-home-u$i" >/dev/null; done
t1=$(date +%s.%N)
size=$(du -sm "$repo" | cut -f1)
echo "first backup: $n homes x $mb MB: $(echo "$t1 - $t0" | bc) s, repository $size MB"

for i in $(seq 1 "$n"); do
	head -c 1048576 /dev/urandom >"$work/change"
	docker cp "$work/change" "$(docker create -v "$tag-home-u$i:/h" --name "$tag-fill" "$img" /usr/bin/restic)":/h/change.bin >/dev/null
	docker rm "$tag-fill" >/dev/null
done
t2=$(date +%s.%N)
for i in $(seq 1 "$n"); do helper "$tag-home-u$i" backup -q --host bench --tag "user=u$i" "/home/$tag-home-u$i" >/dev/null; done
t3=$(date +%s.%N)
size2=$(du -sm "$repo" | cut -f1)
echo "incremental after 1 MB more per home: $(echo "$t3 - $t2" | bc) s, repository $size2 MB"
helper - check 2>&1 | tail -1
