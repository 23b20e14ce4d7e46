package audit

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// writeJWKS writes the key's JWKS the way the gateway serves it (kid =
// base64url JWK thumbprint) and returns the file and the kid.
func writeJWKS(t *testing.T, dir string, pub crypto.PublicKey) (string, string) {
	t.Helper()
	jwk := jose.JSONWebKey{Key: pub, Algorithm: string(jose.ES256), Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return file, jwk.KeyID
}

func TestRunVerify(t *testing.T) {
	key := testKey(t)
	dir := t.TempDir()
	jwks, kid := writeJWKS(t, dir, &key.PublicKey)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pemFile := filepath.Join(dir, "pub.pem")
	os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	otherJWKS, _ := writeJWKS(t, t.TempDir(), &testKey(t).PublicKey)

	path := filepath.Join(dir, "audit.log")
	w, l := openLog(t, Options{Path: path, Signer: key, KeyID: kid, CheckpointEvery: 5, MaxSize: 1500})
	logRecords(l, 0, 12)
	w.Close()
	rotated, _ := rotatedFiles(path)
	all := append(rotated, path)

	run := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := RunVerify(args, &out)
		return code, strings.TrimSpace(out.String())
	}
	if code, out := run(append([]string{"--jwks", jwks}, all...)...); code != 0 || out != "ok: 16 records, 3 checkpoints" {
		t.Fatalf("--jwks: %d %q", code, out)
	}
	if code, out := run(append(all, "--key", pemFile)...); code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("--key after the files: %d %q", code, out)
	}
	if code, out := run(append([]string{"--jwks", otherJWKS}, all...)...); code != 1 || !strings.Contains(out, "bad checkpoint") {
		t.Fatalf("a JWKS without the signing key: %d %q", code, out)
	}

	// Edit the current file's second line: exit 1, naming it.
	lines := readLines(t, path)
	lines[1] = strings.Replace(lines[1], `"info"`, `"warn"`, 1)
	writeLines(t, path, lines)
	if code, out := run(append([]string{"--jwks", jwks}, all...)...); code != 1 || !strings.HasPrefix(out, path+":2: edited: ") {
		t.Fatalf("edited log: %d %q", code, out)
	}

	for _, args := range [][]string{{path}, {"--jwks", jwks}, {"--jwks", jwks, "--key", pemFile, path}, {"--key", filepath.Join(dir, "missing.pem"), path}, {"--jwks", jwks, filepath.Join(dir, "missing.log")}} {
		if code, out := run(args...); code != 2 {
			t.Errorf("RunVerify(%q) = %d %q; want 2", args, code, out)
		}
	}
}
