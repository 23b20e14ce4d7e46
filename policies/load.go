package policies

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Load reads, validates and merges the policy in paths. Each path is a file
// or a folder; a folder contributes its *.yaml and *.yml files (not
// recursively, in name order), ignoring dotfiles and editor leftovers such
// as "name~", ".#name" and "#name#". A file given explicitly is read
// whatever its name. A file reached twice (say, by its path and its folder)
// is read once.
//
// All files are merged into one Policy: admins add up, while a team, image,
// local account or API token defined twice (in two files, or twice in one)
// is a problem naming both places. Finding no file at all is an error.
//
// Invalid policies are reported as Errors, listing every problem found;
// files that cannot be read are reported as ordinary errors.
func Load(paths ...string) (*Policy, error) {
	p, _, _, err := load(paths)
	return p, err
}

// Parse reads and validates one policy document; file names it in
// problems and in Policy.Files. Invalid policies are reported as Errors.
func Parse(file string, data []byte) (*Policy, error) {
	frag, probs := parseFile(file, data)
	p, mergeProbs := merge([]*fragment{frag}, []string{file})
	if probs = append(probs, mergeProbs...); len(probs) > 0 {
		return nil, probs.sorted()
	}
	p.Hash = fmt.Sprintf("sha256:%x", fingerprintOf([]string{file}, [][]byte{data}))
	return p, nil
}

// load is Load, also returning the files found and a fingerprint of their
// names and contents (nil if they could not all be read), so that the
// watcher can tell whether anything changed.
func load(paths []string) (p *Policy, files []string, fingerprint []byte, err error) {
	files, err = findFiles(paths)
	if err != nil {
		return nil, files, nil, err
	}
	h := sha256.New()
	frags := make([]*fragment, 0, len(files))
	var probs Errors
	for _, f := range files {
		data, err := readFile(f)
		if err != nil {
			return nil, files, nil, fmt.Errorf("loading policy: %w", err)
		}
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
		binary.BigEndian.PutUint64(n[:], uint64(len(data)))
		h.Write(n[:])
		h.Write(data)
		frag, fp := parseFile(f, data)
		frags = append(frags, frag)
		probs = append(probs, fp...)
	}
	fingerprint = h.Sum(nil)
	p, mp := merge(frags, files)
	if probs = append(probs, mp...); len(probs) > 0 {
		return nil, files, fingerprint, probs.sorted()
	}
	p.Hash = fmt.Sprintf("sha256:%x", fingerprint)
	return p, files, fingerprint, nil
}

// findFiles expands paths into the policy files to read.
func findFiles(paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, errors.New("loading policy: no policy file or folder given")
	}
	var files []string
	seen := make(map[string]bool)
	addFile := func(f string) {
		key := f
		if abs, err := filepath.Abs(f); err == nil {
			key = abs
		}
		if !seen[key] {
			seen[key] = true
			files = append(files, f)
		}
	}
	for _, root := range paths {
		info, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("loading policy: %w", err)
		}
		if !info.IsDir() {
			addFile(root)
			continue
		}
		entries, err := os.ReadDir(root)
		if err != nil {
			return nil, fmt.Errorf("loading policy: %w", err)
		}
		for _, e := range entries { // sorted by name
			name := e.Name()
			if !isPolicyFileName(name) {
				continue
			}
			f := filepath.Join(root, name)
			info, err := os.Stat(f) // follows symlinks, as in Kubernetes config maps
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since ReadDir, or a dangling link
			}
			if err != nil {
				return nil, fmt.Errorf("loading policy: %w", err)
			}
			if info.Mode().IsRegular() {
				addFile(f)
			}
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("loading policy: no policy files (*.yaml, *.yml) found in %s", strings.Join(paths, ", "))
	}
	return files, nil
}

// isPolicyFileName reports whether a file found in a policy folder is to be
// loaded.
func isPolicyFileName(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "#") || strings.HasSuffix(name, "~") {
		return false
	}
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

// merge combines the fragments of all files into one policy, checking for
// things defined twice and for references to unknown images.
func merge(frags []*fragment, files []string) (*Policy, Errors) {
	p := &Policy{
		Accounts:  make(map[string]string),
		Images:    make(map[string]*Image),
		Teams:     make(map[string]*Team),
		APITokens: make(map[string]string),
		Services:  make(map[string]*Service),
		Files:     slices.Clone(files),
	}
	var probs Errors
	tokenHashAt := make(map[string]def[string])
	twice := func(field string, at, first pos) {
		probs = append(probs, Problem{File: at.file, Line: at.line, Field: field,
			Message: fmt.Sprintf("defined twice (also at %s)", first)})
	}
	accountAt, imageAt, teamAt, tokenAt, serviceAt := map[string]pos{}, map[string]pos{}, map[string]pos{}, map[string]pos{}, map[string]pos{}
	for _, f := range frags {
		p.Admins = append(p.Admins, f.admins...)
		addOnce(p.Accounts, accountAt, "accounts", f.accounts, twice, nil)
		addOnce(p.Images, imageAt, "images", f.images, twice, nil)
		addOnce(p.Teams, teamAt, "teams", f.teams, twice, nil)
		addOnce(p.Services, serviceAt, "services", f.services, twice, nil)
		addOnce(p.APITokens, tokenAt, "api_tokens", f.tokens, twice, func(d def[string]) bool {
			if other, dup := tokenHashAt[d.val]; dup {
				probs = append(probs, Problem{File: d.at.file, Line: d.at.line, Field: joinField("api_tokens", d.name),
					Message: fmt.Sprintf("same token hash as %s (at %s); give each client its own token", joinField("api_tokens", other.name), other.at)})
				return false
			}
			tokenHashAt[d.val] = d
			return true
		})
	}
	p.DefaultLimits = builtinLimits
	var defaultsAt *pos
	for _, f := range frags {
		for _, d := range f.defaults {
			if defaultsAt != nil {
				twice("defaults", d.at, *defaultsAt)
				continue
			}
			defaultsAt = &d.at
			p.DefaultLimits = d.val.set.fill(d.val.limits, builtinLimits)
		}
	}
	var retentionAt *pos
	for _, f := range frags {
		for _, d := range f.retention {
			if retentionAt != nil {
				twice("retention", d.at, *retentionAt)
				continue
			}
			retentionAt = &d.at
			p.Retention = d.val
		}
	}
	for _, f := range frags {
		for _, d := range f.teams {
			d.val.Limits = f.teamSet[d.val].fill(d.val.Limits, p.DefaultLimits)
		}
	}
	known := make([]string, 0, len(p.Images))
	for k := range p.Images {
		known = append(known, k)
	}
	slices.Sort(known)
	for _, f := range frags {
		for _, r := range f.refs {
			if _, ok := p.Images[r.key]; ok {
				continue
			}
			msg := fmt.Sprintf("unknown image %q (known: %s)", r.key, strings.Join(known, ", "))
			if len(known) == 0 {
				msg = fmt.Sprintf("unknown image %q (no images are defined)", r.key)
			}
			probs = append(probs, Problem{File: r.at.file, Line: r.at.line, Field: r.field, Message: msg})
		}
	}
	probs = append(probs, checkTeamRefs(p, frags)...)
	if len(probs) > 0 {
		return nil, probs
	}
	p.teamServices()
	p.Admins = sortedUnique(p.Admins)
	if p.Admins == nil {
		p.Admins = []string{}
	}
	p.index()
	return p, nil
}

// addOnce adds each definition of one section to dst, unless a
// definition of the same name came before (in any file): that is a problem
// naming both places. accept, if set, may refuse a definition for a
// reason of its own.
func addOnce[T any](dst map[string]T, at map[string]pos, section string, defs []def[T], twice func(field string, at, first pos), accept func(def[T]) bool) {
	for _, d := range defs {
		if first, dup := at[d.name]; dup {
			twice(joinField(section, d.name), d.at, first)
			continue
		}
		if accept != nil && !accept(d) {
			continue
		}
		at[d.name] = d.at
		dst[d.name] = d.val
	}
}

// readFile reads f, or its first MaxFileBytes+1 bytes when it is larger
// (parseFile refuses it then), so a huge file costs no more than that.
func readFile(f string) ([]byte, error) {
	fh, err := os.Open(f)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return io.ReadAll(io.LimitReader(fh, MaxFileBytes+1))
}

// fingerprintOf is the fingerprint load computes, of files and their
// contents: each name and content length-prefixed, in order.
func fingerprintOf(files []string, contents [][]byte) []byte {
	h := sha256.New()
	var n [8]byte
	for i, f := range files {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
		binary.BigEndian.PutUint64(n[:], uint64(len(contents[i])))
		h.Write(n[:])
		h.Write(contents[i])
	}
	return h.Sum(nil)
}
