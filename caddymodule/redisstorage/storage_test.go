package redisstorage

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

func TestStoreLoadStatDelete(t *testing.T) {
	srv := startRedis(t)
	st := newStorage(t, srv, "rt", 0)
	ctx := context.Background()

	value := []byte("-----BEGIN KEY-----\x00\xff binary \n")
	before := time.Now().Add(-time.Second)
	if err := st.Store(ctx, "certificates/acme/example.org/example.org.key", value); err != nil {
		t.Fatal(err)
	}
	got, err := st.Load(ctx, "certificates/acme/example.org/example.org.key")
	if err != nil || !bytes.Equal(got, value) {
		t.Fatalf("Load = %q, %v; want %q", got, err, value)
	}
	info, err := st.Stat(ctx, "certificates/acme/example.org/example.org.key")
	if err != nil || !info.IsTerminal || info.Size != int64(len(value)) || info.Modified.Before(before) {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	dir, err := st.Stat(ctx, "certificates/acme")
	if err != nil || dir.IsTerminal {
		t.Fatalf("Stat of a directory = %+v, %v; want non-terminal", dir, err)
	}
	if !st.Exists(ctx, "certificates") || st.Exists(ctx, "certificates/acme/other") {
		t.Fatal("Exists wrong for a directory or a missing key")
	}

	if err := st.Store(ctx, "certificates/acme/example.org/example.org.key", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Load(ctx, "certificates/acme/example.org/example.org.key"); string(got) != "new" {
		t.Fatalf("overwrite: Load = %q", got)
	}

	if _, err := st.Load(ctx, "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v; want fs.ErrNotExist", err)
	}
	if _, err := st.Stat(ctx, "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of a missing key: %v; want fs.ErrNotExist", err)
	}
	if err := st.Delete(ctx, "missing/too"); err != nil {
		t.Fatalf("Delete of a missing key: %v; want nil", err)
	}

	// Deleting a "directory" deletes what is below it, and only that.
	for _, k := range []string{"a/b/c", "a/b/d", "a/bx", "a/b"} {
		if err := st.Store(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Delete(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a/b", "a/b/c", "a/b/d"} {
		if st.Exists(ctx, k) {
			t.Errorf("%s survived Delete(a/b)", k)
		}
	}
	if got, err := st.Load(ctx, "a/bx"); string(got) != "a/bx" {
		t.Errorf("a/bx was deleted with a/b: %q, %v", got, err)
	}
	// Nothing is left in Redis of the deleted keys.
	n, err := srv.client(t).Exists(ctx, "rt:v:a/b", "rt:v:a/b/c", "rt:v:a/b/d").Result()
	if err != nil || n != 0 {
		t.Errorf("value keys left after Delete: %d, %v", n, err)
	}
}

func TestPrefixesAreSeparate(t *testing.T) {
	srv := startRedis(t)
	one, two := newStorage(t, srv, "one", 0), newStorage(t, srv, "two", 0)
	ctx := context.Background()
	if err := one.Store(ctx, "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if two.Exists(ctx, "k") {
		t.Fatal("a key stored under prefix one is seen under prefix two")
	}
	if err := two.Delete(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if !one.Exists(ctx, "k") {
		t.Fatal("deleting everything under prefix two deleted prefix one's key")
	}
}

// TestListMatchesFileStorage runs the same stores and lists against
// certmagic's file storage (what Caddy uses by default) and this one.
func TestListMatchesFileStorage(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	keys := []string{
		"certificates/acme/example.org/example.org.crt",
		"certificates/acme/example.org/example.org.key",
		"certificates/acme/example.org/example.org.json",
		"certificates/acme/b.example.org/b.example.org.crt",
		"certificates/acme-staging/x/x.crt",
		"certificates/acme/example.org-x/y",
		"hubgate/identities/alice",
		"hubgate/identities/bob",
		"hubgate/master.key",
		"top",
	}
	cases := []struct {
		prefix    string
		recursive bool
	}{
		{"", false}, {"", true},
		{"certificates", false}, {"certificates", true},
		{"certificates/acme", false}, {"certificates/acme", true},
		{"certificates/acme/", true}, {"/certificates//acme", false},
		{"certificates/acme/example.org", false},
		{"hubgate", false}, {"hubgate", true},
		{"hubgate/identities", true},
		{"hubgate/master.key", false}, {"top", true},
		{"missing", false}, {"missing", true}, {"hubgate/ident", false},
	}
	fsDir := t.TempDir()
	fsStore := &certmagic.FileStorage{Path: fsDir}
	rs := newStorage(t, srv, "list", 0)
	for _, k := range keys {
		if err := fsStore.Store(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
		if err := rs.Store(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cases {
		name := c.prefix
		if c.recursive {
			name += " recursive"
		}
		t.Run(name, func(t *testing.T) {
			want, wantErr := fsStore.List(ctx, c.prefix, c.recursive)
			got, gotErr := rs.List(ctx, c.prefix, c.recursive)
			if errors.Is(wantErr, fs.ErrNotExist) != errors.Is(gotErr, fs.ErrNotExist) || (wantErr == nil) != (gotErr == nil) {
				t.Fatalf("errors differ: file storage %v, redis %v", wantErr, gotErr)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("List(%q, %t)\n redis: %q\n files: %q", c.prefix, c.recursive, got, want)
			}
		})
	}
	// Exists and Stat agree too, on every key and directory and a few
	// missing ones.
	all, _ := fsStore.List(ctx, "", true)
	// (Not "hubgate/master.key/x" for Exists: the file storage says it
	// exists, since stat fails with ENOTDIR rather than ENOENT.)
	for _, k := range append(all, "missing", "certificates/acm", "hubgate/master.key/x") {
		fi, ferr := fsStore.Stat(ctx, k)
		ri, rerr := rs.Stat(ctx, k)
		if (ferr == nil) != (rerr == nil) || fi.IsTerminal != ri.IsTerminal || (fi.IsTerminal && fi.Size != ri.Size) {
			t.Errorf("Stat(%q): files %+v %v; redis %+v %v", k, fi, ferr, ri, rerr)
		}
		if k != "hubgate/master.key/x" && fsStore.Exists(ctx, k) != rs.Exists(ctx, k) {
			t.Errorf("Exists(%q) differs", k)
		}
	}
	// And Delete of a directory.
	for _, s := range []certmagic.Storage{fsStore, rs} {
		if err := s.Delete(ctx, "certificates/acme"); err != nil {
			t.Fatal(err)
		}
	}
	want, _ := fsStore.List(ctx, "", true)
	got, _ := rs.List(ctx, "", true)
	if !slices.Equal(got, want) {
		t.Fatalf("after Delete(certificates/acme)\n redis: %q\n files: %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(fsDir, "certificates", "acme")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("file storage kept the directory: %v", err)
	}
}

// TestStorageDownThenUp stops Redis under a Storage: calls fail quickly
// with an error naming the server (never "not found", which would make
// Caddy or hubgate think a key is gone), and work again once it is back.
func TestStorageDownThenUp(t *testing.T) {
	srv := startRedis(t)
	st := newStorage(t, srv, "down", 2*time.Second)
	ctx := context.Background()
	if err := st.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	srv.stop()

	start := time.Now()
	_, err := st.Load(ctx, "k")
	if err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), srv.addr) {
		t.Fatalf("Load with Redis down: %v; want an error naming %s, not fs.ErrNotExist", err, srv.addr)
	}
	t.Logf("error while down: %v", err)
	if err := st.Store(ctx, "k2", []byte("v")); err == nil {
		t.Fatal("Store with Redis down succeeded")
	}
	if _, err := st.List(ctx, "", true); err == nil {
		t.Fatal("List with Redis down succeeded")
	}
	if st.Exists(ctx, "k") {
		t.Fatal("Exists with Redis down said yes")
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := st.Lock(lctx, "cull"); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with Redis down: %v; want the connection error at once", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("calls with Redis down took %s; want quick failures", took)
	}

	srv.start() // empty again: no persistence in the test server
	if err := st.Store(ctx, "k", []byte("back")); err != nil {
		t.Fatalf("Store after Redis came back: %v", err)
	}
	if got, err := st.Load(ctx, "k"); err != nil || string(got) != "back" {
		t.Fatalf("Load after Redis came back: %q, %v", got, err)
	}
	if err := st.Lock(lctx, "cull"); err != nil {
		t.Fatalf("Lock after Redis came back: %v", err)
	}
	if err := st.Unlock(ctx, "cull"); err != nil {
		t.Fatalf("Unlock after Redis came back: %v", err)
	}
}
