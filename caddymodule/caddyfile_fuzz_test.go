package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzUnmarshalCaddyfile: no hubgate block, however malformed, panics the
// Caddyfile parser; a block that parses also validates or says why.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, s := range []string{
		"hubgate {\n policy p.yaml\n name x\n}",
		"hubgate {\n oidc a {\n issuer https://x\n client_id c\n }\n}",
		"hubgate p.yaml",
		"hubgate {\n docker {\n isolate maybe\n }\n}",
		"hubgate {\n github {\n recheck_interval -1s\n }\n local off\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(body)); err != nil {
			return
		}
		h.applyDefaults()
		_ = h.Validate()
	})
}
