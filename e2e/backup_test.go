package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The backup tests run the real thing: bin/caddy with a backup block,
// Debian's restic in the hubgate/restic helper image (images/restic), the
// Docker engine, and the host's restic to look into the repository.

const backupImage = "hubgate/restic:latest"

// backupApp is the test app under a tag of these tests' own (its files
// endpoint takes folders), so another checkout's build of
// hubgate/testapp:latest cannot swap it under them.
const backupApp = "hubgate/testapp:backup"

// backupGateway starts a gateway whose Caddyfile has a backup block with
// a fresh repository (a host path) and password file.
func backupGateway(t *testing.T, policy string) (*gateway, string, string) {
	t.Helper()
	if _, err := exec.LookPath("restic"); err != nil {
		t.Fatal("restic is missing: apt-get install restic (make test-deps does it)")
	}
	if out, err := exec.Command(filepath.Join(repoRoot, "images", "restic", "build.sh"), backupImage).CombinedOutput(); err != nil {
		t.Fatalf("building %s failed: %v\n%s", backupImage, err, out)
	}
	if out, err := exec.Command(filepath.Join(repoRoot, "images", "testapp", "build.sh"), backupApp).CombinedOutput(); err != nil {
		t.Fatalf("building %s failed: %v\n%s", backupApp, err, out)
	}
	policy = strings.ReplaceAll(policy, "hubgate/testapp:latest", backupApp)
	g := newGateway(t, gwOptions{policy: policy})
	repo := filepath.Join(g.dir, "repo")
	pwFile := filepath.Join(g.dir, "restic-password")
	if err := os.WriteFile(pwFile, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g.runWith(authCaddyfile(t, g.dir, fmt.Sprintf(`backup {
	repository %s
	password_file %s
	every 6h
	usage_every 2s
	check_every 1s
	keep_daily 14
	keep_weekly 8
}`, repo, pwFile)))
	return g, repo, pwFile
}

// hostRestic runs the host's restic on the repository.
func hostRestic(t *testing.T, repo, pwFile string, args ...string) string {
	t.Helper()
	cmd := exec.Command("restic", append([]string{"--no-cache", "-r", repo, "--password-file", pwFile}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("restic %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// adminAction posts one action of the admin page's backup section.
func adminAction(t *testing.T, g *gateway, admin *http.Client, form url.Values) (*http.Response, string) {
	t.Helper()
	_, page := g.navigate(admin, "/hub/admin")
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("admin page without csrf:\n%s", page)
	}
	form.Set("csrf", m[1])
	return g.do(admin, http.MethodPost, "/hub/admin/backup", strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html", "Sec-Fetch-Mode", "navigate", "Origin", g.url(""))
}

// putFile writes a file through the user's app.
func putFile(t *testing.T, g *gateway, c *http.Client, user, name, body string) {
	t.Helper()
	resp, out := g.do(c, http.MethodPut, "/user/"+user+"/notebook/files/"+name, strings.NewReader(body), "Origin", g.url(""))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s: %d %s", name, resp.StatusCode, out)
	}
}

func getFile(t *testing.T, g *gateway, c *http.Client, user, name string) (int, string) {
	t.Helper()
	resp, body := g.getReady(c, "/user/"+user+"/notebook/files/"+name)
	return resp.StatusCode, body
}

var snapshotRE = regexp.MustCompile(`<code class="snapshot-id">([0-9a-f]{8})</code>`)

// lastSnapshot is the short ID the admin page shows as user's last backup.
func lastSnapshot(t *testing.T, g *gateway, admin *http.Client, user string) string {
	t.Helper()
	_, page := g.navigate(admin, "/hub/admin")
	i := strings.Index(page, `<tr data-user="`+user+`"><td>`+user+`</td>`)
	if i < 0 {
		t.Fatalf("admin page has no backup row for %s", user)
	}
	m := snapshotRE.FindStringSubmatch(page[i:])
	if m == nil {
		t.Fatalf("admin page shows no snapshot for %s:\n%s", user, page[i:min(len(page), i+2000)])
	}
	return m[1]
}

func longClient(c *http.Client) *http.Client {
	c.Timeout = 5 * time.Minute
	return c
}

// TestBackupAndRestore: files written through the app are in the next
// snapshot; a deleted file comes back from the home page into the side
// folder with its content; after `docker volume rm` the whole home comes
// back in place; `restic check` passes on the repository.
func TestBackupAndRestore(t *testing.T) {
	g, repo, pw := backupGateway(t, basePolicy)
	alice := longClient(g.login("alice"))
	admin := longClient(g.login("admin"))
	if resp, body := g.getReady(alice, "/user/alice/notebook/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("start: %d %s", resp.StatusCode, body)
	}
	putFile(t, g, alice, "alice", "notes.txt", "the first draft of the analysis")
	putFile(t, g, alice, "alice", "data/cohort.csv", "id,age\n1,42\n")

	start := time.Now()
	if resp, body := adminAction(t, g, admin, url.Values{"user": {"alice"}, "action": {"backup"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("backup now: %d %s", resp.StatusCode, body)
	}
	t.Logf("backup of a small home through the admin page: %s", time.Since(start).Round(time.Millisecond))
	snap := lastSnapshot(t, g, admin, "alice")
	ls := hostRestic(t, repo, pw, "ls", snap)
	for _, f := range []string{"/home/alice/notes.txt", "/home/alice/data/cohort.csv"} {
		if !strings.Contains(ls, f) {
			t.Errorf("snapshot %s lacks %s:\n%s", snap, f, ls)
		}
	}
	// The password is nowhere in the log.
	if strings.Contains(g.logs(), "correct horse") {
		t.Error("the repository password is in the gateway's log")
	}
	if !g.waitLog(`"msg":"backup"`, 5*time.Second) {
		t.Error("no audit record of the backup")
	}

	// The user deletes a file, then restores it from the home page.
	if resp, _ := g.do(alice, http.MethodDelete, "/user/alice/notebook/files/notes.txt", nil, "Origin", g.url("")); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	_, home := g.navigate(alice, "/")
	if !strings.Contains(home, `id="snapshots"`) || !strings.Contains(home, snap) {
		t.Fatalf("home page does not list snapshot %s:\n%s", snap, home)
	}
	id := regexp.MustCompile(`<option value="([0-9a-f]{8,64})">` + snap).FindStringSubmatch(home)
	m := csrfRE.FindStringSubmatch(home)
	if id == nil || m == nil {
		t.Fatalf("home page has no restore form:\n%s", home)
	}
	// Without the CSRF token: refused.
	resp, _ := g.do(alice, http.MethodPost, "/hub/restore", strings.NewReader(url.Values{"snapshot": {id[1]}, "path": {"notes.txt"}}.Encode()),
		"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("restore without csrf: %d, want 403", resp.StatusCode)
	}
	resp, body := g.do(alice, http.MethodPost, "/hub/restore", strings.NewReader(url.Values{"snapshot": {id[1]}, "path": {"notes.txt"}, "csrf": {m[1]}}.Encode()),
		"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html", "Sec-Fetch-Mode", "navigate", "Origin", g.url(""))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/?restored="+snap {
		t.Fatalf("restore: %d %q %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if code, got := getFile(t, g, alice, "alice", "restored/"+snap+"/notes.txt"); code != http.StatusOK || got != "the first draft of the analysis" {
		t.Fatalf("restored file: %d %q", code, got)
	}
	if code, _ := getFile(t, g, alice, "alice", "notes.txt"); code != http.StatusNotFound {
		t.Errorf("the restore wrote outside the side folder: notes.txt answers %d", code)
	}
	// Only the one file was restored.
	if code, _ := getFile(t, g, alice, "alice", "restored/"+snap+"/data/cohort.csv"); code != http.StatusNotFound {
		t.Errorf("restoring one path restored more: data/cohort.csv answers %d", code)
	}
	// The app (uid 1000) can delete what was restored: the side folder is hers.
	if resp, _ := g.do(alice, http.MethodDelete, "/user/alice/notebook/files/restored/"+snap+"/notes.txt", nil, "Origin", g.url("")); resp.StatusCode != http.StatusNoContent {
		t.Errorf("deleting the restored file: %d", resp.StatusCode)
	}

	// Someone removes the volume by hand: the admin restores the whole
	// home in place (the server must be stopped first).
	if resp, body := adminAction(t, g, admin, url.Values{"user": {"alice"}, "action": {"restore"}, "snapshot": {id[1]}, "in_place": {"1"}}); resp.StatusCode != http.StatusConflict {
		t.Errorf("in-place restore with the server running: %d, want 409: %s", resp.StatusCode, body)
	}
	_, page := g.navigate(admin, "/hub/admin")
	m = csrfRE.FindStringSubmatch(page)
	if resp, _ := g.do(admin, http.MethodPost, "/hub/admin", strings.NewReader(url.Values{"user": {"alice"}, "server": {"notebook"}, "csrf": {m[1]}}.Encode()),
		"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html", "Sec-Fetch-Mode", "navigate", "Origin", g.url("")); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("stop: %d", resp.StatusCode)
	}
	eventually(t, 20*time.Second, "alice's container gone", func() bool { return len(g.containers("alice")) == 0 })
	vol := g.name + "-home-alice"
	if out, err := exec.Command("docker", "volume", "rm", vol).CombinedOutput(); err != nil {
		t.Fatalf("docker volume rm: %v %s", err, out)
	}
	if resp, body := adminAction(t, g, admin, url.Values{"user": {"alice"}, "action": {"restore"}, "snapshot": {id[1]}, "in_place": {"1"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("in-place restore: %d %s", resp.StatusCode, body)
	}
	if code, got := getFile(t, g, alice, "alice", "notes.txt"); code != http.StatusOK || got != "the first draft of the analysis" {
		t.Errorf("notes.txt after the whole-home restore: %d %q", code, got)
	}
	if code, got := getFile(t, g, alice, "alice", "data/cohort.csv"); code != http.StatusOK || got != "id,age\n1,42\n" {
		t.Errorf("data/cohort.csv after the whole-home restore: %d %q", code, got)
	}
	// The app can write to its restored home (owners came back too).
	putFile(t, g, alice, "alice", "data/new.csv", "x")

	if out := hostRestic(t, repo, pw, "check"); !strings.Contains(out, "no errors were found") {
		t.Errorf("restic check:\n%s", out)
	}
}

// TestStorageQuota: over the soft quota the home page warns; over the
// hard quota a start is refused with a page saying how much to delete and
// which folders are largest.
func TestStorageQuota(t *testing.T) {
	policy := strings.Replace(basePolicy, "    images: [notebook]\n", "    images: [notebook]\n    storage: {soft: 10KiB, hard: 1MiB}\n", 1)
	g, _, _ := backupGateway(t, policy)
	alice := longClient(g.login("alice"))
	if resp, body := g.getReady(alice, "/user/alice/notebook/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("start: %d %s", resp.StatusCode, body)
	}
	putFile(t, g, alice, "alice", "small.txt", strings.Repeat("s", 20<<10))
	eventually(t, 60*time.Second, "the soft-quota warning on the home page", func() bool {
		_, home := g.navigate(alice, "/")
		return strings.Contains(home, `id="storage-warning"`)
	})
	_, home := g.navigate(alice, "/")
	if strings.Contains(home, `id="storage-hard"`) {
		t.Error("hard-quota warning while under the hard quota")
	}

	putFile(t, g, alice, "alice", "big/blob.bin", strings.Repeat("b", 2<<20))
	m := csrfRE.FindStringSubmatch(home)
	if resp, _ := g.do(alice, http.MethodPost, "/hub/stop", strings.NewReader(url.Values{"server": {"notebook"}, "csrf": {m[1]}}.Encode()),
		"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html", "Sec-Fetch-Mode", "navigate", "Origin", g.url("")); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("stop: %d", resp.StatusCode)
	}
	eventually(t, 60*time.Second, "the hard-quota warning on the home page", func() bool {
		_, home := g.navigate(alice, "/")
		return strings.Contains(home, `id="storage-hard"`)
	})
	resp, page := g.navigate(alice, "/user/alice/notebook/")
	if resp.StatusCode != http.StatusInsufficientStorage {
		t.Fatalf("start over the hard quota: %d, want 507:\n%s", resp.StatusCode, page)
	}
	for _, want := range []string{"Delete at least", "~/big", "Your home is full"} {
		if !strings.Contains(page, want) {
			t.Errorf("quota page lacks %q:\n%s", want, page)
		}
	}
	if len(g.containers("alice")) != 0 {
		t.Error("a container was started over the hard quota")
	}
	resp, body := g.get(alice, "/user/alice/notebook/")
	var j map[string]any
	if resp.StatusCode != http.StatusInsufficientStorage || json.Unmarshal([]byte(body), &j) != nil || j["status"] != "over_quota" {
		t.Errorf("API client over quota: %d %s", resp.StatusCode, body)
	}
}

// TestOffboarding: a user removed from a policy with retention 10s is
// offboarded in order (servers stopped, final snapshot verified, volume
// deleted), and the admin restores the home from that final snapshot.
func TestOffboarding(t *testing.T) {
	policy := "retention: 10s\n" + basePolicy
	g, repo, pw := backupGateway(t, policy)
	bob := longClient(g.login("bob"))
	admin := longClient(g.login("admin"))
	if resp, body := g.getReady(bob, "/user/bob/notebook/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("start: %d %s", resp.StatusCode, body)
	}
	putFile(t, g, bob, "bob", "thesis/chapter1.md", "bob's chapter one")

	removed := time.Now()
	g.writePolicy(strings.ReplaceAll(strings.Replace(policy, "[alice, bob, admin]", "[alice, admin]", 1), "hubgate/testapp:latest", backupApp))
	if !g.waitLog("offboarding clock started", 30*time.Second) {
		t.Fatal("no offboarding clock started")
	}
	_, page := g.navigate(admin, "/hub/admin")
	if !strings.Contains(page, `id="pending"`) || !strings.Contains(page, `<tr data-user="bob"><td>bob</td>`) {
		t.Errorf("admin page does not list bob's pending deletion:\n%s", page)
	}
	if !g.waitLog("offboarding: volume deleted", 3*time.Minute) {
		t.Fatalf("bob was not offboarded:\n%s", g.logTail())
	}
	if took := time.Since(removed); took < 10*time.Second {
		t.Errorf("offboarded %s after removal, before the 10s retention", took)
	}
	logs := g.logs()
	last := -1
	for _, step := range []string{"offboarding clock started", "offboarding: begin", "offboarding: servers stopped", "offboarding: access revoked", "offboarding: final backup verified", "offboarding: volume deleted"} {
		i := strings.Index(logs, step)
		if i < 0 || i < last {
			t.Errorf("step %q missing or out of order", step)
		}
		last = i
	}
	if len(g.containers("bob")) != 0 {
		t.Error("bob's container is still there")
	}
	if out, err := exec.Command("docker", "volume", "inspect", g.name+"-home-bob").CombinedOutput(); err == nil {
		t.Errorf("bob's volume is still there: %s", out)
	}
	snaps := hostRestic(t, repo, pw, "snapshots", "--tag", "user=bob,final", "--json")
	var list []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(snaps), &list); err != nil || len(list) != 1 {
		t.Fatalf("final snapshots of bob: %v %s", err, snaps)
	}
	if !strings.Contains(hostRestic(t, repo, pw, "ls", list[0].ID), "/home/bob/thesis/chapter1.md") {
		t.Error("the final snapshot lacks bob's file")
	}

	// Bob comes back; the admin restores his deleted home from the final
	// backup and he finds his file.
	g.writePolicy(strings.ReplaceAll(policy, "hubgate/testapp:latest", backupApp))
	eventually(t, 10*time.Second, "bob back in the policy", func() bool {
		resp, _ := g.navigate(bob, "/")
		return resp.StatusCode == http.StatusOK
	})
	if resp, body := adminAction(t, g, admin, url.Values{"user": {"bob"}, "action": {"restore-deleted"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("restore deleted home: %d %s", resp.StatusCode, body)
	}
	if code, got := getFile(t, g, bob, "bob", "thesis/chapter1.md"); code != http.StatusOK || got != "bob's chapter one" {
		t.Errorf("bob's file after the restore: %d %q", code, got)
	}
}

// TestNoRetentionKeepsHomes: without a retention nothing is ever deleted,
// however long a user is out of the policy; the admin page says so.
func TestNoRetentionKeepsHomes(t *testing.T) {
	g, _, _ := backupGateway(t, basePolicy)
	bob := g.login("bob")
	admin := g.login("admin")
	if resp, body := g.getReady(bob, "/user/bob/notebook/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("start: %d %s", resp.StatusCode, body)
	}
	putFile(t, g, bob, "bob", "keep.txt", "keep me")
	g.writePolicy(strings.ReplaceAll(strings.Replace(basePolicy, "[alice, bob, admin]", "[alice, admin]", 1), "hubgate/testapp:latest", backupApp))
	if !g.waitLog("offboarding clock started", 30*time.Second) {
		t.Fatal("no offboarding clock started")
	}
	time.Sleep(15 * time.Second) // many check rounds (check_every 1s)
	if out, err := exec.Command("docker", "volume", "inspect", g.name+"-home-bob").CombinedOutput(); err != nil {
		t.Fatalf("bob's volume was deleted without a retention: %v %s", err, out)
	}
	if strings.Contains(g.logs(), "offboarding: begin") {
		t.Error("offboarding began without a retention")
	}
	_, page := g.navigate(admin, "/hub/admin")
	if !strings.Contains(page, "never (no retention)") {
		t.Errorf("admin page does not say bob's home is kept:\n%s", page)
	}
}
