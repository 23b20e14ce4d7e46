package caddymodule

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writePolicy(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const cliPolicy = `admins: [monika]
images:
  notebook: {image: "hubgate/testapp:latest"}
  rstudio: {image: "hubgate/rstudio:latest"}
teams:
  research:
    members: [alice]
    images: [notebook]
    limits: {memory: 1GiB, cpus: 1}
    idle_timeout: 1h
  data:
    groups: ["github:org/data"]
    images: [rstudio]
    repos: [org/analysis]
    github_token: true
    limits: {memory: 4GiB, cpus: 2}
    idle_timeout: 30m
`

func TestCheckPolicyGoodAndBad(t *testing.T) {
	var out bytes.Buffer
	code, err := checkPolicy(&out, []string{writePolicy(t, cliPolicy)})
	if code != 0 || err != nil || !strings.HasPrefix(out.String(), "ok: 2 teams, 2 images") || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("good policy: code %d err %v\n%s", code, err, out.String())
	}
	bad := strings.Replace(cliPolicy, "images: [notebook]", "images: [notebok]", 1)
	bad = strings.Replace(bad, "limits: {memory: 1GiB, cpus: 1}", "limits: {memory: lots, cpus: 1}", 1)
	bad += "  research:\n    members: [x]\n"
	bad = strings.Replace(bad, "idle_timeout: 1h", "idle_timout: 1h", 1)
	out.Reset()
	path := writePolicy(t, bad)
	code, err = checkPolicy(&out, []string{path})
	if code == 0 || err == nil {
		t.Fatalf("bad policy accepted:\n%s", out.String())
	}
	text := out.String()
	for _, want := range []string{
		`policy.yaml:8: teams.research.images[0]: unknown image "notebok"`,
		`policy.yaml:9: teams.research.limits.memory: invalid size "lots"`,
		`policy.yaml:10: teams.research.idle_timout: unknown field (did you mean "idle_timeout"?)`,
		"policy.yaml:18: teams.research: defined twice",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("check-policy output lacks %q:\n%s", want, text)
		}
	}
	t.Logf("check-policy on a bad file:\n%s", text)
}

func TestWhoCanExplains(t *testing.T) {
	path := writePolicy(t, cliPolicy)
	var out bytes.Buffer
	if code, err := whoCan(&out, []string{path, "Alice", "github:Org/Data"}); code != 0 || err != nil {
		t.Fatalf("who-can: %d %v", code, err)
	}
	text := out.String()
	for _, want := range []string{
		"user: alice",
		"research (member)",
		"data (group github:org/data)",
		"images: notebook, rstudio",
		"repos: org/analysis",
		"memory 4 GiB, cpus 2",
		"idle timeout: 1h0m0s",
		"github token to containers: yes",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("who-can output lacks %q:\n%s", want, text)
		}
	}
	out.Reset()
	if code, _ := whoCan(&out, []string{path, "mallory"}); code != 0 || !strings.Contains(out.String(), "not in the policy") {
		t.Errorf("who-can for a stranger: %d\n%s", code, out.String())
	}
	if code, _ := whoCan(&out, []string{"/nonexistent/policy.yaml", "alice"}); code == 0 {
		t.Error("who-can without a policy file succeeded")
	}
}
