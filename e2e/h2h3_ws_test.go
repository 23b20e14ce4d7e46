package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
)

// extWS is a websocket opened with an RFC 8441 (HTTP/2) or RFC 9220
// (HTTP/3) extended CONNECT: the request body carries the client's
// frames, the response body the app's.
type extWS struct {
	w    *io.PipeWriter
	r    *bufio.Reader
	body io.Closer
}

// dialExtended opens /user/alice/notebook/ws over proto ("h2" or "h3")
// with the cookies c holds for the gateway.
func (g *gateway) dialExtended(t *testing.T, c *http.Client, proto string) *extWS {
	t.Helper()
	u, _ := url.Parse(g.url("/user/alice/notebook/ws"))
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodConnect, u.String(), pr)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range c.Jar.Cookies(u) {
		req.AddCookie(ck)
	}
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Origin", g.url(""))
	tlsc := &tls.Config{RootCAs: g.roots, ServerName: "localhost"}
	var rt http.RoundTripper
	switch proto {
	case "h2":
		req.Header.Set(":protocol", "websocket")
		tlsc.NextProtos = []string{"h2"}
		rt = &http2.Transport{TLSClientConfig: tlsc}
	case "h3":
		req.Proto = "websocket"
		rt = &http3.Transport{TLSClientConfig: tlsc}
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s extended CONNECT: %v", proto, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s extended CONNECT: status %d %s", proto, resp.StatusCode, body)
	}
	ws := &extWS{w: pw, r: bufio.NewReader(resp.Body), body: resp.Body}
	t.Cleanup(func() { pw.Close(); resp.Body.Close() })
	return ws
}

// send writes one masked text frame.
func (ws *extWS) send(msg string) error {
	frame := []byte{0x81, 0x80 | byte(len(msg)), 1, 2, 3, 4}
	for i := range len(msg) {
		frame = append(frame, msg[i]^frame[2+i%4])
	}
	_, err := ws.w.Write(frame)
	return err
}

// recv reads one unmasked frame's payload.
func (ws *extWS) recv() (string, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(ws.r, hdr[:]); err != nil {
		return "", err
	}
	n := int(hdr[1] & 0x7f)
	if n == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(ws.r, ext[:]); err != nil {
			return "", err
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(ws.r, buf); err != nil {
		return "", err
	}
	if hdr[0]&0x0f == 0x8 {
		return "", fmt.Errorf("close frame")
	}
	return string(buf), nil
}

// TestWebsocketsOverHTTP2AndHTTP3 (H1): websockets opened with an
// extended CONNECT over HTTP/2 and HTTP/3 are registered like HTTP/1.1
// ones: they echo, their frames count as activity (an idle_timeout shorter
// than the test keeps the server alive while they talk), and logout closes
// them at once.
func TestWebsocketsOverHTTP2AndHTTP3(t *testing.T) {
	g := startGateway(t, gwOptions{
		policy: strings.Replace(basePolicy, "images: [notebook]", "images: [notebook]\n    idle_timeout: 4s", 1),
		env:    map[string]string{"GODEBUG": "http2xconnect=1", "HUBGATE_CULL_INTERVAL": "1s"},
	})
	alice := g.login("alice")
	g.whoami(alice, "alice")
	streams := map[string]*extWS{}
	for _, proto := range []string{"h2", "h3"} {
		ws := g.dialExtended(t, alice, proto)
		if err := ws.send("hi " + proto); err != nil {
			t.Fatalf("%s send: %v", proto, err)
		}
		if got, err := ws.recv(); err != nil || got != "hi "+proto {
			t.Fatalf("%s echo: %q, %v", proto, got, err)
		}
		streams[proto] = ws
	}
	// Only websocket frames for 7 s, past the 4 s idle timeout: the server
	// must stay up (the frames are activity).
	ids := g.containers("alice")
	for i := range 14 {
		for proto, ws := range streams {
			msg := fmt.Sprintf("%s %d", proto, i)
			if err := ws.send(msg); err != nil {
				t.Fatalf("%s send: %v", proto, err)
			}
			if got, err := ws.recv(); err != nil || got != msg {
				t.Fatalf("%s echo %d: %q, %v", proto, i, got, err)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if now := g.containers("alice"); len(now) != 1 || now[0] != ids[0] {
		t.Fatalf("the server was culled while its h2/h3 websockets talked: %v -> %v", ids, now)
	}
	// Logout ends both at once.
	g.logout(alice)
	for proto, ws := range streams {
		done := make(chan error, 1)
		go func() {
			_, err := ws.recv()
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s: a message after logout", proto)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s websocket stayed open after logout", proto)
		}
	}
	if !g.waitLog(`"streams_closed":2`, 2*time.Second) {
		t.Error("logout did not report closing two streams")
	}
}

// TestWebsocketEndsWithItsSession (L2): an open websocket does not
// outlive the session it was opened with.
func TestWebsocketEndsWithItsSession(t *testing.T) {
	g := startGateway(t, gwOptions{env: map[string]string{"HUBGATE_SESSION_TTL": "4s"}})
	alice := g.login("alice")
	g.whoami(alice, "alice")
	ctx, ws := g.dialEcho(alice, "alice")
	began := time.Now()
	for {
		if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			break
		}
		if _, _, err := ws.Read(ctx); err != nil {
			break
		}
		if time.Since(began) > 12*time.Second {
			t.Fatal("the websocket outlived its 4s session by 8s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if d := time.Since(began); d < 2*time.Second {
		t.Fatalf("the websocket ended after %s, before its session did", d)
	}
}
