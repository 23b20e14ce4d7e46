package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// egressProbe runs inside a user container (the Jupyter image's Python):
// "fetch URL" fetches through the proxy the container was given
// (urllib reads HTTPS_PROXY, credential and all) trusting only the test's
// CA; "direct HOST PORT" opens a TCP connection around the proxy.
const egressProbe = `
import os, socket, ssl, sys, urllib.request
if sys.argv[1] == "fetch":
    ctx = ssl.create_default_context(cadata=os.environ["TEST_CA"])
    try:
        with urllib.request.urlopen(sys.argv[2], context=ctx, timeout=20) as r:
            print("STATUS", r.status, r.read().decode())
    except Exception as e:
        print("ERROR", e)
else:
    try:
        socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=3).close()
        print("CONNECTED")
    except Exception as e:
        print("ERROR", e)
`

// testCA makes a CA and a server certificate for names, signed by it.
func testCA(t *testing.T, names ...string) (caPEM string, cert tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hubgate egress test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
}

// tlsServer serves h over HTTPS with cert on a loopback port: only the
// egress proxy (through its resolve entries) reaches it, never a
// container.
func tlsServer(t *testing.T, cert tls.Certificate, h http.Handler) string {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "https://")
}

const egressPolicy = `admins: [admin]
images:
  notebook:
    image: "hubgate/jupyter-debian:latest"
    port: 8888
    home: /home/jovyan
    env:
      # The test's git host has a certificate of the test's own CA; the
      # point here is the route, not the trust store.
      GIT_SSL_NO_VERIFY: "true"
teams:
  research:
    members: [alice, admin]
    images: [notebook]
    repos: [team/analysis]
    egress: [allowed.test]
`

// TestEgressAllowList is issue #15's egress check on the real engine,
// with the real Jupyter image: from inside alice's server, an allowed
// host is fetched through the proxy, a host the policy does not list is
// refused with the message (and audited), a direct connection has no
// route, the team's repo is cloned through the proxy at start, and a
// policy edit that drops the host refuses the next fetch.
func TestEgressAllowList(t *testing.T) {
	buildTestImage(t, "jupyter-debian", jupyterImage)
	caPEM, cert := testCA(t, "allowed.test", "denied.test", "github.com")
	web := tlsServer(t, cert, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.Host)
	}))
	const token = "ghp_e2eEGRESS5f3c9a1b7d2e4f6a8c0b"
	gitSrv := startGitHTTPServer(t, "127.0.0.1", token)
	gitSrv.newRepo(t, "team/analysis", map[string]string{"README.md": "cloned through the egress proxy\n"})
	// github.com for the container is this HTTPS front of the test's git
	// server (it adds the token the local user has none of).
	gitHost := tlsServer(t, cert, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.SetBasicAuth("x-access-token", token)
		gitSrv.server.Handler.ServeHTTP(w, r)
	}))

	// A listener on every host address, for the direct-connection check.
	direct, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	go func() {
		for {
			c, err := direct.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	directPort := direct.Addr().(*net.TCPAddr).Port

	g := startAuthGateway(t, gwOptions{policy: egressPolicy, env: map[string]string{"HUBGATE_START_TIMEOUT": "3m"}}, fmt.Sprintf(`egress {
	port %d
	resolve allowed.test:443 %s
	resolve denied.test:443 %s
	resolve github.com:443 %s
}`, freePort(t), web, web, gitHost))

	alice := g.login("alice")
	var resp *http.Response
	var body string
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		resp, body = g.get(alice, "/user/alice/notebook/api/status")
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's notebook: %d\n%s", resp.StatusCode, truncateBody(body))
	}
	// The gateway on the host reaches the container on its internal
	// network (it just proxied the page), and that network is internal.
	ids := g.containers("alice")
	if len(ids) != 1 {
		t.Fatalf("alice has %d containers", len(ids))
	}
	id := ids[0]
	if got := docker("network", "inspect", "-f", "{{.Internal}}", g.name); got != "true" {
		t.Fatalf("network %s internal = %q, want true", g.name, got)
	}
	gw := docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", g.name)

	probe := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("docker", append([]string{"exec", "-e", "TEST_CA=" + caPEM, id, "python3", "-c", egressProbe}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("probe %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}

	// The container was given the proxy, with a credential of its own.
	env := docker("exec", id, "sh", "-c", `echo "$HTTPS_PROXY|$https_proxy|$NO_PROXY"`)
	if !strings.Contains(env, "@"+gw+":") || !strings.HasSuffix(env, "|localhost,127.0.0.1,::1") {
		t.Errorf("proxy environment: %q (network gateway %s)", env, gw)
	}

	if got := probe("fetch", "https://allowed.test/"); got != "STATUS 200 hello from allowed.test" {
		t.Errorf("allowed host through the proxy: %q", got)
	}
	got := probe("fetch", "https://denied.test/")
	if !strings.Contains(got, "egress to denied.test:443 is not allowed for team research") {
		t.Errorf("host not in the policy: %q", got)
	}
	// Around the proxy there is no way out: Docker drops what would leave
	// the internal network (the container keeps a default route, but the
	// packets go nowhere; from an ordinary bridge this connects).
	if got := probe("direct", "1.1.1.1", "443"); !strings.HasPrefix(got, "ERROR") {
		t.Errorf("direct connection to 1.1.1.1: %q, want a failure", got)
	}
	// The gateway host's own addresses are local delivery, not routing:
	// Docker's internal network does not stop them (a host firewall rule
	// must; see README). Recorded, not asserted.
	for _, ip := range hostAddrs(t, gw) {
		t.Logf("direct connection to the host's own %s:%d: %s", ip, directPort, probe("direct", ip, fmt.Sprint(directPort)))
	}

	// The refusal is in the audit trail, with who, which server and where.
	if !g.waitLog(`"msg":"egress refused"`, 5*time.Second) {
		t.Fatal("no egress refusal in the audit log")
	}
	var record string
	for _, l := range strings.Split(g.logs(), "\n") {
		if strings.Contains(l, `"msg":"egress refused"`) {
			record = l
		}
	}
	for _, want := range []string{`"logger":"hubgate.audit"`, `"user":"alice"`, `"server":"notebook"`, `"host":"denied.test"`, `"port":443`, `"teams":["research"]`} {
		if !strings.Contains(record, want) {
			t.Errorf("audit record lacks %s: %s", want, record)
		}
	}
	if strings.Contains(g.logs(), strings.SplitN(strings.TrimPrefix(env, "http://"), "@", 2)[0]) {
		t.Error("the container's proxy credential is in the gateway's log")
	}

	// The team's repo was cloned at start, through the proxy (the git host
	// is on the gateway's loopback: nothing else reaches it).
	if got := docker("exec", id, "cat", "/home/jovyan/repos/analysis/README.md"); got != "cloned through the egress proxy" {
		t.Errorf("cloned README: %q\nsync log:\n%s\ngit server saw: %s", got,
			docker("exec", id, "cat", "/home/jovyan/repos/.hubgate-sync.log"), gitSrv.requests())
	}
	if !strings.Contains(gitSrv.requests(), "x-access-token:ok") {
		t.Errorf("the git server saw no clone: %s", gitSrv.requests())
	}

	// Dropping the host from the policy refuses the next connection.
	g.writePolicy(strings.Replace(egressPolicy, "egress: [allowed.test]", "egress: []", 1))
	eventually(t, 10*time.Second, "the reload to refuse allowed.test", func() bool {
		return strings.Contains(probe("fetch", "https://allowed.test/"), "egress to allowed.test:443 is not allowed for team research")
	})
}

// hostAddrs are the host's IPv4 addresses other than loopback and the
// gateway's address on the containers' own network.
func hostAddrs(t *testing.T, except string) []string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.To4() == nil || n.IP.IsLoopback() || n.IP.String() == except {
			continue
		}
		out = append(out, n.IP.String())
	}
	if len(out) == 0 {
		t.Fatal("the host has no address besides loopback and the containers' network")
	}
	return out
}

func truncateBody(s string) string {
	if len(s) > 2000 {
		return s[:2000]
	}
	return s
}
