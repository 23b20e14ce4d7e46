package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // htpasswd's {SHA} format, a loopback benchmark account
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The seed's proxy and a popular Go auth proxy, as anchors beside plain
// Caddy: configurable-http-proxy (Debian's node-configurable-http-proxy,
// what JupyterHub runs) and oauth2-proxy (built by `go install` into
// $HOME/.cache/hubgate/, keyed by version; see the Makefile's bench target).
const (
	chpBin           = "/usr/bin/configurable-http-proxy"
	chpNodePath      = "/usr/share/nodejs"
	oauth2ProxyVer   = "v7.15.6"
	oauth2ProxyMod   = "github.com/oauth2-proxy/oauth2-proxy/v7"
	oauth2CookieName = "_oauth2_proxy"
)

// oauth2ProxyBin is where the Makefile installs oauth2-proxy (BENCH_OAUTH2_PROXY overrides).
func oauth2ProxyBin() string {
	if v := os.Getenv("BENCH_OAUTH2_PROXY"); v != "" {
		return v
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "hubgate", "oauth2-proxy-"+oauth2ProxyVer, "oauth2-proxy")
}

// selfSignedCert writes a P-256 certificate for localhost and 127.0.0.1
// (the anchors that are not Caddy serve TLS with it) and returns the
// paths of the certificate and key.
func selfSignedCert(dir string) (string, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath := filepath.Join(dir, "anchor-cert.pem"), filepath.Join(dir, "anchor-key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// startCHP starts configurable-http-proxy twice (it serves either http or
// https on its public port), and adds the bench user's route through its
// REST API as JupyterHub does: POST /api/routes/user/bench/notebook with
// the container as target. The client sends the container token itself:
// CHP adds no credentials (in JupyterHub the notebook server checks the
// user's own token or cookie).
func (b *bench) startCHP(ctx context.Context, certPath, keyPath string) error {
	if _, err := os.Stat(chpBin); err != nil {
		return fmt.Errorf("configurable-http-proxy is missing (%w): `apt-get install node-configurable-http-proxy` (make bench does it)", err)
	}
	apiToken := randomHex(16)
	for _, tls := range []bool{false, true} {
		ports, err := freePorts(2)
		if err != nil {
			return err
		}
		port, apiPort := ports[0], ports[1]
		args := []string{"--ip", "127.0.0.1", "--port", strconv.Itoa(port), "--api-ip", "127.0.0.1", "--api-port", strconv.Itoa(apiPort),
			"--log-level", "warn"}
		label := "configurable-http-proxy (http)"
		if tls {
			args = append(args, "--ssl-key", keyPath, "--ssl-cert", certPath)
			label = "configurable-http-proxy (https)"
		}
		p := &caddyProc{
			label:   label,
			bin:     chpBin,
			args:    args,
			dir:     b.work,
			env:     mergeEnv(map[string]string{"NODE_PATH": chpNodePath, "CONFIGPROXY_AUTH_TOKEN": apiToken}),
			logPath: filepath.Join(b.work, fmt.Sprintf("chp-%t.log", tls)),
			cpus:    serverCPU,
		}
		if tls {
			p.httpsPort = port
		} else {
			p.httpPort = port
		}
		b.cl.add("stop "+label, p.stop)
		if err := p.start(); err != nil {
			return err
		}
		api := fmt.Sprintf("http://127.0.0.1:%d/api/routes", apiPort)
		c := &http.Client{Timeout: 5 * time.Second}
		deadline := time.Now().Add(30 * time.Second)
		for {
			body, _ := json.Marshal(map[string]string{"target": "http://" + b.app.addr()})
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, api+"/user/bench/notebook", bytes.NewReader(body))
			req.Header.Set("Authorization", "token "+apiToken)
			resp, err := c.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusCreated {
					break
				}
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			select {
			case <-p.exited:
				return fmt.Errorf("%s exited during start; see %s:\n%s", label, p.logPath, tail(p.logPath, 2000))
			default:
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: add the route through its API: %w", label, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if tls {
			b.chpTLS = p
		} else {
			b.chp = p
		}
	}
	return nil
}

// startOAuth2Proxy starts oauth2-proxy (http and https listeners in one
// process) with an htpasswd account and the bench user's container as its
// upstream, and signs in through its own form for a cookie session.
func (b *bench) startOAuth2Proxy(ctx context.Context, certPath, keyPath string) error {
	bin := oauth2ProxyBin()
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("oauth2-proxy is missing (%w): `GOBIN=%s go install %s@%s` (make bench does it)",
			err, filepath.Dir(bin), oauth2ProxyMod, oauth2ProxyVer)
	}
	sum := sha1.Sum([]byte(b.password)) //nolint:gosec // htpasswd {SHA}
	htpasswd := filepath.Join(b.work, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("bench:{SHA}"+base64.StdEncoding.EncodeToString(sum[:])+"\n"), 0o600); err != nil {
		return err
	}
	secret := randomHex(16) // 32 characters: an AES-256 cookie secret
	// With a certificate oauth2-proxy serves https only: one process for
	// each scheme, sharing the cookie secret (so one sign-in serves both).
	for _, tls := range []bool{false, true} {
		ports, err := freePorts(1)
		if err != nil {
			return err
		}
		args := []string{
			"--upstream=http://" + b.app.addr() + "/",
			// A provider must be named; the htpasswd form signs in
			// without ever reaching it.
			"--provider=github", "--client-id=bench", "--client-secret=bench",
			"--email-domain=*",
			"--htpasswd-file=" + htpasswd, "--display-htpasswd-form=true",
			"--cookie-secret=" + secret, "--cookie-secure=false", "--cookie-name=" + oauth2CookieName,
			// The client sends the container token (as for CHP); the
			// user headers (X-Forwarded-User) are passed as hubgate's are.
			"--pass-basic-auth=false", "--pass-user-headers=true",
			// No access log (neither Caddy nor hubgate writes one here).
			"--request-logging=false", "--auth-logging=false", "--silence-ping-logging=true",
		}
		label := "oauth2-proxy (http)"
		if tls {
			label = "oauth2-proxy (https)"
			args = append(args, "--https-address=127.0.0.1:"+strconv.Itoa(ports[0]), "--tls-cert-file="+certPath, "--tls-key-file="+keyPath)
		} else {
			args = append(args, "--http-address=127.0.0.1:"+strconv.Itoa(ports[0]))
		}
		p := &caddyProc{
			label:      label,
			bin:        bin,
			args:       args,
			dir:        b.work,
			env:        os.Environ(),
			logPath:    filepath.Join(b.work, fmt.Sprintf("oauth2-proxy-%t.log", tls)),
			cpus:       serverCPU,
			goMaxProcs: 1,
		}
		ping := fmt.Sprintf("http://127.0.0.1:%d/ping", ports[0])
		if tls {
			p.httpsPort = ports[0]
			ping = fmt.Sprintf("https://127.0.0.1:%d/ping", ports[0])
			b.o2pTLS = p
		} else {
			p.httpPort = ports[0]
			b.o2p = p
		}
		b.cl.add("stop "+label, p.stop)
		if err := p.start(); err != nil {
			return err
		}
		if err := p.waitURL(ctx, ping, 30*time.Second); err != nil {
			return err
		}
	}
	p := b.o2p
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := url.Values{"username": {"bench"}, "password": {b.password}, "rd": {"/"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.httpURL("/oauth2/sign_in"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("oauth2-proxy sign-in: %w", err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == oauth2CookieName && ck.Value != "" {
			b.o2pCookie = ck.Name + "=" + ck.Value
		}
	}
	if resp.StatusCode != http.StatusFound || b.o2pCookie == "" {
		b.o2p, b.o2pTLS = nil, nil
		return fmt.Errorf("oauth2-proxy sign-in: status %d, cookie set %t; see %s", resp.StatusCode, b.o2pCookie != "", p.logPath)
	}
	log.Printf("oauth2-proxy %s signed in through its htpasswd form", oauth2ProxyVer)
	return nil
}

// optionalAnchor runs start; when it fails the run goes on without that
// anchor and the report says why.
func (b *bench) optionalAnchor(name string, start func() error) {
	if err := start(); err != nil {
		note := fmt.Sprintf("%s is left out of this run: %v", name, err)
		log.Printf("WARNING: %s", note)
		b.res.notes = append(b.res.notes, note)
	}
}

// taskset is the pinning command (util-linux), needed for the pinned runs.
func haveTaskset() bool {
	_, err := exec.LookPath("taskset")
	return err == nil
}
