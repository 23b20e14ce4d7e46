// Command backup-helper runs inside hubgate's backup helper image
// (hubgate/restic), next to Debian's restic, in a short-lived container
// that mounts one user's home volume. It does what restic alone does not:
//
//	backup-helper du HOME
//	    prints JSON {"bytes", "files", "largest": [{"path", "bytes"}]}: the
//	    apparent size and number of the regular files under HOME, and the
//	    ten largest folders at depth one and two (paths relative to HOME).
//	backup-helper restore SNAPSHOT HOME SIDE [PATH...]
//	    restores the snapshot's copy of HOME (or only PATHs in it) into
//	    HOME/SIDE (such as "restored/1a2b3c4d"): restic restores into a
//	    staging folder inside the volume, which is then renamed into place,
//	    and the folders it made are given HOME's owner, so the user's own
//	    server can read and delete what was restored.
//
// The repository and its password come from restic's own environment
// (RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE); nothing is printed of them.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: backup-helper du HOME | restore SNAPSHOT HOME SIDE [PATH...]"))
	}
	var err error
	switch os.Args[1] {
	case "du":
		if len(os.Args) != 3 {
			fail(errors.New("usage: backup-helper du HOME"))
		}
		var u usage
		u, err = measure(os.Args[2])
		if err == nil {
			err = json.NewEncoder(os.Stdout).Encode(u)
		}
	case "restore":
		if len(os.Args) < 5 {
			fail(errors.New("usage: backup-helper restore SNAPSHOT HOME SIDE [PATH...]"))
		}
		err = restore(os.Args[2], os.Args[3], os.Args[4], os.Args[5:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "backup-helper:", err)
	os.Exit(1)
}

// usage is what du prints.
type usage struct {
	Bytes   int64    `json:"bytes"`
	Files   int64    `json:"files"`
	Largest []folder `json:"largest"`
}

type folder struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
}

// measure walks home without following symbolic links or leaving its
// file system.
func measure(home string) (usage, error) {
	var u usage
	root, err := os.Stat(home)
	if err != nil {
		return u, err
	}
	dev := deviceOf(root)
	folders := map[string]int64{}
	err = filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable entries are skipped, not fatal
		}
		if d.IsDir() {
			if info, err := d.Info(); err == nil && p != home && deviceOf(info) != dev {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		u.Bytes += info.Size()
		u.Files++
		rel, _ := filepath.Rel(home, p)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		for depth := 1; depth <= 2 && depth < len(parts); depth++ {
			folders[strings.Join(parts[:depth], "/")] += info.Size()
		}
		return nil
	})
	for p, b := range folders {
		u.Largest = append(u.Largest, folder{Path: p, Bytes: b})
	}
	sort.Slice(u.Largest, func(i, j int) bool {
		if u.Largest[i].Bytes != u.Largest[j].Bytes {
			return u.Largest[i].Bytes > u.Largest[j].Bytes
		}
		return u.Largest[i].Path < u.Largest[j].Path
	})
	if len(u.Largest) > 10 {
		u.Largest = u.Largest[:10]
	}
	if u.Largest == nil {
		u.Largest = []folder{}
	}
	return u, err
}

func deviceOf(info fs.FileInfo) uint64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev)
	}
	return 0
}

// restore restores snapshot's HOME (or paths in it) into HOME/side.
func restore(snapshot, home, side string, paths []string) error {
	home = filepath.Clean(home)
	side = filepath.Clean(side)
	if !filepath.IsAbs(home) || filepath.IsAbs(side) || side == "." || strings.HasPrefix(side, "..") {
		return fmt.Errorf("bad home %q or side folder %q", home, side)
	}
	owner, err := os.Stat(home)
	if err != nil {
		return err
	}
	st, _ := owner.Sys().(*syscall.Stat_t)
	stage := filepath.Join(home, ".hubgate-restore-"+filepath.Base(side))
	_ = os.RemoveAll(stage)
	defer os.RemoveAll(stage)
	args := []string{"restore", "--no-cache", snapshot, "--target", stage}
	for _, p := range paths {
		p = filepath.Clean("/" + p)
		args = append(args, "--include", filepath.Join(home, p))
	}
	cmd := exec.Command("/usr/bin/restic", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("restic restore: %w", err)
	}
	staged := filepath.Join(stage, home)
	if _, err := os.Stat(staged); err != nil {
		return fmt.Errorf("the snapshot holds nothing under the paths asked for")
	}
	dest := filepath.Join(home, side)
	made, err := mkdirs(home, filepath.Dir(dest))
	if err != nil {
		return err
	}
	if err := moveInto(staged, dest); err != nil {
		return err
	}
	made = append(made, dest)
	if st != nil {
		for _, d := range made {
			if err := os.Lchown(d, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
	}
	fmt.Println(dest)
	return nil
}

// mkdirs makes dir (below home) and returns the folders it made.
func mkdirs(home, dir string) ([]string, error) {
	var made []string
	rel, err := filepath.Rel(home, dir)
	if err != nil || rel == "." {
		return nil, err
	}
	cur := home
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, 0o755); err == nil {
			made = append(made, cur)
		} else if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	return made, nil
}

// moveInto renames src to dest, or, when dest exists (a second restore
// of the same snapshot), moves src's entries into it one by one,
// replacing files of the same name.
func moveInto(src, dest string) error {
	if err := os.Rename(src, dest); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrExist) && !errors.Is(err, syscall.ENOTEMPTY) {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		s, d := filepath.Join(src, e.Name()), filepath.Join(dest, e.Name())
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() && e.IsDir() {
			if err := moveInto(s, d); err != nil {
				return err
			}
			continue
		}
		_ = os.RemoveAll(d)
		if err := os.Rename(s, d); err != nil {
			return err
		}
	}
	return nil
}
