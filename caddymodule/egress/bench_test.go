package egress

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/hubgate/hubgate/policies"
)

// BenchmarkDownload compares a 100 MB download (and a small request on a
// fresh connection, for latency) made directly with the same made
// through the egress proxy, as a CONNECT tunnel (HTTPS) and as a plain
// HTTP request, in one run on loopback, so that the difference is the
// proxy's own cost:
//
//	go test ./caddymodule/egress -run '^$' -bench Download -benchtime 5x
func BenchmarkDownload(b *testing.B) {
	const size = 100 << 20
	chunk := make([]byte, 1<<20)
	serve := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/small" {
			io.WriteString(w, "ok")
			return
		}
		for i := 0; i < size/len(chunk); i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	tlsSrv := httptest.NewTLSServer(serve)
	defer tlsSrv.Close()
	plainSrv := httptest.NewServer(serve)
	defer plainSrv.Close()

	pol, err := policies.Parse("p.yaml", []byte("teams:\n  t:\n    members: [alice]\n    egress: [big.test, \"big.test:80\"]\n"))
	if err != nil {
		b.Fatal(err)
	}
	key := testDeriver("k")
	srv := NewServer(NewProxy(), nil)
	srv.AddView(&View{
		Credentials: key, Callers: testCallers{"alice/nb": {Nonce: "n", IP: netip.MustParseAddr("127.0.0.1")}},
		Policy: func() *policies.Policy { return pol }, Logger: zap.NewNop(), Audit: zap.NewNop(),
		Resolve: map[string]string{
			"big.test:443": strings.TrimPrefix(tlsSrv.URL, "https://"),
			"big.test:80":  strings.TrimPrefix(plainSrv.URL, "http://"),
		},
	})
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	defer srv.Destruct()
	name, pass := Credential(key, "alice", "nb", "n")
	proxyURL := &url.URL{Scheme: "http", User: url.UserPassword(name, pass), Host: srv.Addr()}

	newClient := func(proxied, keepAlive bool) *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: !keepAlive}
		if proxied {
			tr.Proxy = http.ProxyURL(proxyURL)
		}
		return &http.Client{Transport: tr}
	}
	cases := []struct {
		name, direct, proxied string
	}{
		{"https", tlsSrv.URL, "https://big.test"},
		{"http", plainSrv.URL, "http://big.test"},
	}
	fetch := func(b *testing.B, c *http.Client, u string) int64 {
		resp, err := c.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("%s: %d %v", u, resp.StatusCode, err)
		}
		return n
	}
	for _, tc := range cases {
		for _, via := range []string{"direct", "proxy"} {
			u := tc.direct
			if via == "proxy" {
				u = tc.proxied
			}
			b.Run(tc.name+"/100MB/"+via, func(b *testing.B) {
				c := newClient(via == "proxy", true)
				b.SetBytes(size)
				for i := 0; i < b.N; i++ {
					if n := fetch(b, c, u+"/big"); n != size {
						b.Fatalf("got %d bytes", n)
					}
				}
			})
			b.Run(tc.name+"/small-new-conn/"+via, func(b *testing.B) {
				c := newClient(via == "proxy", false)
				for i := 0; i < b.N; i++ {
					fetch(b, c, u+"/small")
				}
			})
		}
	}
}
