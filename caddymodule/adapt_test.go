package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite the golden adapt files")

// adapt turns a Caddyfile into indented JSON the way `caddy adapt` does.
func adapt(t *testing.T, body []byte) (string, error) {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		t.Fatal("caddyfile adapter not registered")
	}
	out, warnings, err := adapter.Adapt(body, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return "", err
	}
	for _, w := range warnings {
		t.Logf("adapt warning: %s", w)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatalf("indent adapted JSON: %v", err)
	}
	return buf.String(), nil
}

// TestAdaptGolden pins the JSON of every testdata/adapt/*.caddytest file:
// a Caddyfile, a line of dashes, and the expected JSON (or "error: ..."
// for a Caddyfile that must be refused).
func TestAdaptGolden(t *testing.T) {
	for _, env := range []string{"HUBGATE_HTTP_PORT", "HUBGATE_HTTPS_PORT", "HUBGATE_ADMIN", "HUBGATE_SITE", "HUBGATE_POLICY", "HUBGATE_NAME", "HUBGATE_START_TIMEOUT", "HUBGATE_START_WAIT", "HUBGATE_MAX_CONCURRENT_STARTS", "HUBGATE_CULL_INTERVAL"} {
		if _, ok := os.LookupEnv(env); ok {
			t.Setenv(env, "")
			os.Unsetenv(env)
		}
	}
	files, err := filepath.Glob("testdata/adapt/*.caddytest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(raw), "\n----------\n")
			if !ok {
				t.Fatalf("%s: missing the ---------- separator", f)
			}
			got, err := adapt(t, []byte(input))
			if err != nil {
				got = "error: " + err.Error()
			}
			if *update {
				if err := os.WriteFile(f, []byte(input+"\n----------\n"+got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.TrimSpace(got) != strings.TrimSpace(want) {
				t.Errorf("%s: adapted config differs\n--- got\n%s\n--- want\n%s", f, got, want)
			}
		})
	}
}

// TestRepoCaddyfileAdapts pins the repository's example Caddyfile.
func TestRepoCaddyfileAdapts(t *testing.T) {
	body, err := os.ReadFile("../Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	got, err := adapt(t, body)
	if err != nil {
		t.Fatalf("the repository's Caddyfile does not adapt: %v", err)
	}
	golden := "testdata/Caddyfile.json"
	if *update {
		if err := os.WriteFile(golden, []byte(got+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
		t.Errorf("Caddyfile adapts differently from %s (run go test ./caddymodule -run Adapt -update after checking the change)\n%s", golden, got)
	}
}
