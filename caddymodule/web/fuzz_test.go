package web

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
)

// FuzzUserPath: whatever the spelling, a path is allowed only for the
// server it really names once cleaned and decoded, and only canonical
// spellings are allowed at all.
func FuzzUserPath(f *testing.F) {
	for _, s := range []string{"/user/alice/notebook/", "/user/alice/../bob/notebook/", "/user/%61lice/notebook/x",
		"/user/alice%2F..%2Fbob/notebook/", "/user//bob/notebook", "/user/ALICE/notebook/", "/user/alice/notebook/../../bob/notebook/"} {
		f.Add(s)
	}
	pol, err := policies.Parse("p.yaml", []byte("images:\n  notebook: {image: x, port: 1}\nteams:\n  t:\n    members: [alice, bob]\n    images: [notebook]\n"))
	if err != nil {
		f.Fatal(err)
	}
	alice := &session.Session{User: "alice"}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil || !strings.HasPrefix(raw, "/") {
			return
		}
		r := &http.Request{Method: http.MethodGet, URL: u, Host: "hub.test", Header: http.Header{}, TLS: &tls.ConnectionState{}}
		d := Authorize(pol, alice, r, func() string { return "https://hub.test" })
		if !d.Allow {
			return
		}
		cleaned := path.Clean(u.Path)
		if !strings.HasPrefix(cleaned+"/", "/user/alice/notebook/") {
			t.Fatalf("%q allowed but names %q", raw, cleaned)
		}
		if !strings.HasPrefix(u.EscapedPath(), "/user/alice/notebook/") {
			t.Fatalf("non-canonical %q allowed", raw)
		}
	})
}
