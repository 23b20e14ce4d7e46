#!/bin/bash
# rootfs.sh TAG SUM: makes the base of hubgate/jupyter-debian without a
# registry: debootstrap a minimal Debian 12 (bookworm), apt-get Debian's
# classic Jupyter Notebook, ipykernel, R with IRkernel and git inside it,
# check that Jupyter lists both kernels, add the user jovyan (uid 1000) and
# `docker import` the tree as TAG, labelled hubgate.inputs.sum=SUM. Called by build.sh, which decides when it is
# needed; needs root, debootstrap and a Debian mirror.
#
# The mirror is $DEBIAN_MIRROR, else the first Debian URI apt is set up with
# on this machine (deb822 .sources or sources.list), else deb.debian.org.
set -euo pipefail

tag=$1
sum=$2
suite=bookworm
# Debian's packages, installed without recommends. jupyter-notebook is the
# classic Notebook 6.4 (NotebookApp options, UI at /tree); r-cran-irkernel
# is IRkernel 1.3 for Debian's R 4.2 (r-base-core) and installs its
# kernelspec as /usr/share/jupyter/kernels/ir, so Jupyter lists "R" beside
# "Python 3" with no `IRkernel::installspec()`.
packages=(jupyter-notebook python3-ipykernel r-base-core r-cran-irkernel git ca-certificates tini)

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
fi
if [ -z "$mirror" ]; then
	mirror=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

if [ "$(id -u)" != 0 ]; then
	echo "rootfs.sh: building the Debian rootfs needs root (debootstrap, chroot)" >&2
	exit 1
fi
if ! command -v debootstrap >/dev/null; then
	echo "rootfs.sh: installing debootstrap"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

work=$(mktemp -d /var/tmp/hubgate-rootfs.XXXXXX)
root=$work/root
cleanup() {
	# Unmount whatever is under the tree before deleting it, and never
	# cross into another file system while deleting.
	for m in "$root/proc" "$root/sys" "$root/dev/pts"; do
		if mountpoint -q "$m" 2>/dev/null; then umount -l "$m" || true; fi
	done
	if grep -q " $work/" /proc/mounts; then
		echo "rootfs.sh: something is still mounted under $work; not deleting it" >&2
		return
	fi
	rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
echo "rootfs.sh: debootstrap --variant=minbase $suite from $mirror"
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -n 30 "$work/debootstrap.log" >&2
	if [ -f "$root/debootstrap/debootstrap.log" ]; then tail -n 30 "$root/debootstrap/debootstrap.log" >&2; fi
	exit 1
}

# apt inside the chroot resolves and reaches the mirror as the host does.
cp /etc/hosts "$root/etc/hosts"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"
cat >"$root/etc/apt/apt.conf.d/99hubgate-build" <<'APT'
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT
# No documentation, manuals or translations in the image (copyrights stay).
cat >"$root/etc/dpkg/dpkg.cfg.d/01-hubgate-nodoc" <<'DPKG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
DPKG
mount -t proc proc "$root/proc"

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }
echo "rootfs.sh: apt-get install ${packages[*]}"
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends "${packages[@]}" >"$work/apt.log" 2>&1 || {
	tail -n 40 "$work/apt.log" >&2
	exit 1
}
# Both kernels are registered where every user's Jupyter finds them, asked
# the way Notebook asks (the `jupyter kernelspec` command is in Debian's
# jupyter-client, which nothing here needs).
in_root python3 -c 'import json, sys
from jupyter_client.kernelspec import KernelSpecManager
specs = KernelSpecManager().find_kernel_specs()
missing = [k for k in sys.argv[1:] if k not in specs]
sys.exit("rootfs.sh: Jupyter does not list the kernels %s (it lists %s)" % (missing, json.dumps(specs)) if missing else 0)' python3 ir
in_root useradd --create-home --uid 1000 --user-group --shell /bin/bash --home-dir /home/jovyan jovyan
in_root apt-get clean
umount "$root/proc"

# Leave no build-time configuration or caches behind.
rm -f "$root/etc/apt/apt.conf.d/99hubgate-build" "$root/etc/resolv.conf"
cp "$root/usr/share/base-files/hosts" "$root/etc/hosts" 2>/dev/null || printf '127.0.0.1\tlocalhost\n' >"$root/etc/hosts"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
	"$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/var/tmp/* "$root"/debootstrap
# What debootstrap installed before the dpkg filter existed.
find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# Docker provides /dev, /proc and /sys at run time.
rm -rf "$root"/dev/* "$root"/proc/* "$root"/sys/*

echo "rootfs.sh: docker import as $tag"
# The image's settings come with the import: a classic `docker build`
# step costs seconds per instruction here, so build.sh's layer is one COPY
# (of hubgate-entrypoint and hubgate-start-notebook, named below).
tar --numeric-owner -C "$root" -c . | docker import \
	--change "LABEL hubgate.inputs.sum=$sum" \
	--change "USER jovyan" \
	--change "WORKDIR /home/jovyan" \
	--change "ENV LANG=C.UTF-8 HOME=/home/jovyan SHELL=/bin/bash PORT=8888" \
	--change "EXPOSE 8888" \
	--change 'ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/usr/local/bin/hubgate-entrypoint"]' \
	--change 'CMD ["/usr/local/bin/hubgate-start-notebook"]' \
	--message "hubgate jupyter-debian base ($suite, ${packages[*]})" \
	- "$tag" >/dev/null
echo "rootfs.sh: built $tag in $(($(date +%s) - start))s ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1000000}'))"
