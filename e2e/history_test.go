package e2e

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// auditFiles lists the audit log's files as verify-audit wants them:
// rotated files (audit-<time>.log, which sort by time), then audit.log.
func auditFiles(t *testing.T, logPath string) []string {
	t.Helper()
	rotated, err := filepath.Glob(strings.TrimSuffix(logPath, ".log") + "-*.log")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(rotated)
	return append(rotated, logPath)
}

// auditRecords reads every record of the audit files.
func auditRecords(t *testing.T, files []string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("%s: %v: %q", f, err, l)
			}
			out = append(out, m)
		}
	}
	return out
}

type historyAnswer struct {
	User    string `json:"user"`
	Records []struct {
		Msg    string         `json:"msg"`
		Fields map[string]any `json:"fields"`
	} `json:"records"`
}

// TestAuditRotationRestartAndHistory: with a small rotation size the audit
// log rotates for real while the gateway runs; across the rotations and a
// gateway restart the untouched files verify as one chain, and an edited
// line in a rotated file is named. Each user's history page shows their
// own records (from before the restart too: read back from the log), an
// admin's look at someone's history is audited, and a user cannot look at
// another's.
func TestAuditRotationRestartAndHistory(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	g := startGateway(t, gwOptions{env: map[string]string{"HUBGATE_AUDIT_LOG": logPath, "HUBGATE_AUDIT_LOG_MAX_SIZE": "1KiB"}})
	_, jwks := g.get(g.client(), "/hub/.well-known/jwks.json")
	jwksPath := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, []byte(jwks), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		g.login("alice")
		g.login("bob")
	}
	alice := g.login("alice")
	g.whoami(alice, "alice") // a start: spawn and provenance records
	g.stop()
	if files := auditFiles(t, logPath); len(files) < 3 {
		t.Fatalf("fewer than two rotations at 1 KiB: %v", files)
	}
	g.start()
	alice = g.login("alice")
	bob := g.login("bob")

	// Her history, newest first: this login, and her start and logins
	// from before the restart, and nothing of bob's.
	resp, body := g.get(alice, "/hub/api/history")
	var h historyAnswer
	if err := json.Unmarshal([]byte(body), &h); err != nil || resp.StatusCode != 200 {
		t.Fatalf("alice's history %d %v:\n%s", resp.StatusCode, err, body)
	}
	msgs := map[string]int{}
	for _, r := range h.Records {
		msgs[r.Msg]++
		if r.Fields["user"] != "alice" {
			t.Errorf("alice sees a record of %v: %v", r.Fields["user"], r)
		}
	}
	if h.Records[0].Msg != "login" || msgs["login"] < 8 || msgs["spawn"] != 1 || msgs["provenance"] != 1 {
		t.Fatalf("alice's history after the restart: %v\n%s", msgs, body)
	}
	resp, page := g.get(alice, "/hub/history", "Accept", "text/html")
	if resp.StatusCode != 200 || !strings.Contains(page, "Your access history") || !strings.Contains(page, "provider: local") {
		t.Fatalf("alice's history page %d:\n%s", resp.StatusCode, page)
	}
	if resp, _ := g.get(bob, "/hub/api/history?user=alice"); resp.StatusCode != 403 {
		t.Errorf("bob reading alice's history: %d", resp.StatusCode)
	}
	admin := g.login("admin")
	if resp, body := g.get(admin, "/hub/api/history?user=alice"); resp.StatusCode != 200 || !strings.Contains(body, `"user":"alice"`) {
		t.Fatalf("the admin reading alice's history: %d %s", resp.StatusCode, body)
	}
	if !g.waitLog(`"msg":"history viewed","user":"alice","by":"admin"`, 5*time.Second) {
		t.Error("the admin's look at alice's history is not audited")
	}
	g.stop()

	files := auditFiles(t, logPath)
	verify := func(files ...string) (string, error) {
		out, err := exec.Command(caddyBin, append([]string{"hubgate", "verify-audit", "--jwks", jwksPath}, files...)...).CombinedOutput()
		return string(out), err
	}
	out, err := verify(files...)
	if err != nil || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("untouched log across %d files and a restart: %v\n%s", len(files), err, out)
	}
	t.Logf("%d audit files: %s", len(files), strings.TrimSpace(out))
	if recs := auditRecords(t, files); len(recs) < 20 {
		t.Fatalf("only %d records", len(recs))
	}

	// Edit one line of the second rotated file: verify-audit names it.
	raw, err := os.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(raw), "\n")
	edited := strings.Replace(lines[1], `"msg":"`, `"msg":"x`, 1)
	if edited == lines[1] {
		t.Fatalf("no msg in %q", lines[1])
	}
	lines[1] = edited
	if err := os.WriteFile(files[1], []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = verify(files...)
	if err == nil || !strings.Contains(out, files[1]+":2:") {
		t.Fatalf("the edited line 2 of %s is not named: %v\n%s", files[1], err, out)
	}
	// Leaving out a rotated file is named too.
	out, err = verify(files[2:]...)
	if err == nil || !strings.Contains(out, "start missing") {
		t.Fatalf("a missing first file is not noticed: %v\n%s", err, out)
	}
}

// policyHash is Policy.Hash of the given files: each name and content,
// length-prefixed, in order.
func policyHash(t *testing.T, files ...string) string {
	t.Helper()
	h := sha256.New()
	var n [8]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
		binary.BigEndian.PutUint64(n[:], uint64(len(data)))
		h.Write(n[:])
		h.Write(data)
	}
	return fmt.Sprintf("sha256:%x", h.Sum(nil))
}

// provenancePolicy takes the Jupyter image's tag.
const provenancePolicy = `admins: [admin]
images:
  notebook:
    image: "%s"
    port: 8888
    home: /home/jovyan
    description: "Jupyter Notebook (Debian)"
teams:
  research:
    members: [alice, admin]
    images: [notebook]
    limits: {memory: 1GiB, cpus: 1, pids: 700}
    idle_timeout: 2h
`

// TestProvenanceOnTheRealEngine: a start of the Debian Jupyter image (the
// shared entrypoint) writes ~/.hubgate/provenance.json in the user's home
// volume, and the audit log's provenance record, with the image ID the
// engine runs, the policy's hash and the team's limits.
func TestProvenanceOnTheRealEngine(t *testing.T) {
	// HUBGATE_E2E_JUPYTER_TAG builds and uses a tag of one's own (while
	// the entrypoint differs from the shared image's).
	image := jupyterImage
	if tag := os.Getenv("HUBGATE_E2E_JUPYTER_TAG"); tag != "" {
		image = tag
	}
	buildTestImage(t, "jupyter-debian", image)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	g := startGateway(t, gwOptions{policy: fmt.Sprintf(provenancePolicy, image), env: map[string]string{
		"HUBGATE_AUDIT_LOG": logPath, "HUBGATE_START_TIMEOUT": "2m", "HUBGATE_START_WAIT": "1ms"}})
	alice := g.login("alice")
	if resp, body := g.getReady(alice, "/user/alice/notebook/api/status"); resp.StatusCode != 200 {
		t.Fatalf("the notebook did not start: %d\n%s", resp.StatusCode, body)
	}
	imageID := docker("image", "inspect", "-f", "{{.Id}}", image)
	ids := g.containers("alice")
	if len(ids) != 1 || !strings.HasPrefix(imageID, "sha256:") {
		t.Fatalf("containers %v, image %q", ids, imageID)
	}
	if got := docker("inspect", "-f", "{{.Image}}", ids[0]); got != imageID {
		t.Fatalf("the container runs %s, not %s", got, imageID)
	}
	wantHash := policyHash(t, filepath.Join(g.dir, "policy", "accounts.yaml"), filepath.Join(g.dir, "policy", "policy.yaml"))

	// The file in the home volume, read with the same image (no sync).
	volume := g.name + "-home-alice"
	out, err := exec.Command("docker", "run", "--rm", "--label", "hubgate.deployment="+g.name, "-v", volume+":/home/jovyan",
		"--entrypoint", "cat", image, "/home/jovyan/.hubgate/provenance.json").CombinedOutput()
	if err != nil {
		t.Fatalf("read the provenance file: %v\n%s", err, out)
	}
	var file struct {
		User, Server, Image string
		ImageID             string `json:"image_id"`
		PolicyHash          string `json:"policy_hash"`
		Teams               []string
		Limits              struct {
			MemoryBytes  int64   `json:"memory_bytes"`
			CPUs         float64 `json:"cpus"`
			Pids         int64   `json:"pids"`
			IdleTimeoutS float64 `json:"idle_timeout_s"`
		}
		Repos      []any  `json:"repos"`
		ReportedBy string `json:"repos_reported_by"`
	}
	if err := json.Unmarshal(out, &file); err != nil {
		t.Fatalf("provenance file: %v\n%s", err, out)
	}
	if file.User != "alice" || file.Server != "notebook" || file.Image != image || file.ImageID != imageID || file.PolicyHash != wantHash ||
		file.Limits.MemoryBytes != 1<<30 || file.Limits.CPUs != 1 || file.Limits.Pids != 700 || file.Limits.IdleTimeoutS != 7200 ||
		file.ReportedBy != "hubgate-entrypoint" || file.Repos == nil {
		t.Fatalf("provenance file:\n%s\nwant image %s, policy %s", out, imageID, wantHash)
	}

	// The audit record says the same, with the engine's word for the image.
	var rec map[string]any
	for range 50 {
		for _, r := range auditRecords(t, []string{logPath}) {
			if r["msg"] == "provenance" {
				rec = r
			}
		}
		if rec != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rec == nil || rec["user"] != "alice" || rec["image_id"] != imageID || rec["policy_hash"] != wantHash ||
		rec["memory_bytes"] != float64(1<<30) || rec["pids"] != float64(700) || rec["container_id"] != ids[0][:12] {
		t.Fatalf("provenance record %v\nwant image %s, policy %s, container %s", rec, imageID, wantHash, ids[0][:12])
	}
	t.Logf("provenance.json:\n%s", out)
}

// TestProvenanceRecordsRepoCommits: with a team repo (on a git server the
// test runs on the deployment network's gateway address), the start's
// audit record and ~/.hubgate/provenance.json carry the commit the
// entrypoint's sync left the clone at.
func TestProvenanceRecordsRepoCommits(t *testing.T) {
	image := jupyterImage
	if tag := os.Getenv("HUBGATE_E2E_JUPYTER_TAG"); tag != "" {
		image = tag
	}
	buildTestImage(t, "jupyter-debian", image)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	policy := strings.Replace(fmt.Sprintf(provenancePolicy, image), "    home: /home/jovyan\n", "    home: /home/jovyan\n    env: {GIT_SSL_NO_VERIFY: \"true\"}\n", 1)
	g := newGateway(t, gwOptions{policy: policy + "    repos: [team/analysis]\n", env: map[string]string{
		"HUBGATE_AUDIT_LOG": logPath, "HUBGATE_START_TIMEOUT": "2m", "HUBGATE_START_WAIT": "1ms"}})
	// The deployment's network, made first so the git server can listen
	// on its gateway address (the gateway adopts a network of its name).
	if out, err := exec.Command("docker", "network", "create", "--label", "hubgate.deployment="+g.name,
		"-o", "com.docker.network.bridge.enable_icc=false", g.name).CombinedOutput(); err != nil {
		t.Fatalf("create network: %v\n%s", err, out)
	}
	gw := docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", g.name)
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git is needed on the host: %v", err)
	}
	srv := &gitHTTPServer{root: t.TempDir()}
	up := srv.newRepo(t, "team/analysis", map[string]string{"README.md": "v1\n"})
	up.commit(t, "second", map[string]string{"README.md": "v2\n"})
	head := gitOnHost(t, up.work, "rev-parse", "HEAD")
	l, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		t.Fatalf("listen on the network's gateway %q: %v", gw, err)
	}
	// GitHub's URL must be https off loopback: a TLS server with a
	// certificate of its own, which git in the container is told to
	// accept (GIT_SSL_NO_VERIFY in the image's env of the policy).
	hs := httptest.NewUnstartedServer(&cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(out)), "git-http-backend"), Root: "/",
		Env: []string{"GIT_PROJECT_ROOT=" + srv.root, "GIT_HTTP_EXPORT_ALL=1"}, Stderr: io.Discard,
	})
	hs.Listener.Close()
	hs.Listener = l
	hs.StartTLS()
	t.Cleanup(hs.Close)
	// The clone base comes from the GitHub provider's URL.
	g.env = append(g.env, "HUBGATE_GITHUB_URL="+hs.URL)
	g.runWith(authCaddyfile(t, g.dir, "github {\n\tclient_id hgtest\n\tclient_secret hgtest-secret\n\turl {$HUBGATE_GITHUB_URL}\n\tapi_url {$HUBGATE_GITHUB_URL}\n}"))

	alice := g.login("alice")
	if resp, body := g.getReady(alice, "/user/alice/notebook/api/status"); resp.StatusCode != 200 {
		t.Fatalf("the notebook did not start: %d\n%s", resp.StatusCode, body)
	}
	var rec map[string]any
	for range 50 {
		for _, r := range auditRecords(t, []string{logPath}) {
			if r["msg"] == "provenance" {
				rec = r
			}
		}
		if rec != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	repos, _ := rec["repos"].([]any)
	if rec == nil || rec["repos_reported"] != "by the container's entrypoint" || len(repos) != 1 {
		t.Fatalf("provenance record %v", rec)
	}
	if r := repos[0].(map[string]any); r["repo"] != "team/analysis" || r["commit"] != head || r["branch"] != "main" || r["dirty"] != nil {
		t.Fatalf("repo in the provenance record %v, want commit %s", r, head)
	}
	raw, err := exec.Command("docker", "run", "--rm", "--label", "hubgate.deployment="+g.name, "-v", g.name+"-home-alice:/home/jovyan",
		"--entrypoint", "cat", image, "/home/jovyan/.hubgate/provenance.json").CombinedOutput()
	if err != nil || !strings.Contains(string(raw), `"commit": "`+head+`"`) {
		t.Fatalf("provenance file (want commit %s): %v\n%s", head, err, raw)
	}
}
