// Command rsession-standin stands in for RStudio behind
// jupyter-rsession-proxy in hubgate's tests: RStudio cannot be installed
// here, so this app receives what RStudio would through the gateway and
// reports it, to check the proxy requirements of rsession-proxy:
// websockets on any path, Host kept, one value per X-Forwarded-* header,
// no buffering of long polls.
//
// Like every hubgate app it serves only under $HUBGATE_BASE_URL and
// refuses any request without "Authorization: token $HUBGATE_TOKEN".
// Endpoints, relative to that prefix:
//
//	.../websocket/...   (any path with a "websocket" segment) a websocket:
//	                    first a JSON text message describing the upgrade
//	                    request (as "headers" below), then an echo
//	events/get_events   a long poll like rsession's: writes {"chunk":1},
//	                    flushes, waits ?ms=N (default 2000, at most 10000)
//	                    and writes {"chunk":2}
//	headers, anything   JSON: method, path, host, proto and every header
//	                    with all of its values, as received
//	recorded            JSON: the last 100 requests, as above
//
// The Authorization header is reported as "token [redacted]".
package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// seen is what the stand-in reports about one request.
type seen struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Host    string              `json:"host"`
	Proto   string              `json:"proto"`
	Headers map[string][]string `json:"headers"`
}

type app struct {
	token, prefix string
	mu            sync.Mutex
	recorded      []seen
}

func main() {
	port := envOr("PORT", "8888")
	a := &app{token: os.Getenv("HUBGATE_TOKEN"), prefix: envOr("HUBGATE_BASE_URL", "/")}
	if a.token == "" {
		fmt.Fprintln(os.Stderr, "rsession-standin: HUBGATE_TOKEN is not set; refusing to start")
		os.Exit(1)
	}
	if !strings.HasSuffix(a.prefix, "/") {
		a.prefix += "/"
	}
	srv := &http.Server{Addr: ":" + port, Handler: a, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Fprintf(os.Stderr, "rsession-standin: serving %s on :%s\n", a.prefix, port)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "rsession-standin:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	want := "token " + a.token
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
		http.Error(w, "forbidden: no valid token", http.StatusForbidden)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, a.prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	s := describe(r)
	a.mu.Lock()
	a.recorded = append(a.recorded, s)
	if len(a.recorded) > 100 {
		a.recorded = a.recorded[len(a.recorded)-100:]
	}
	a.mu.Unlock()

	switch {
	case hasSegment(rest, "websocket"):
		a.websocket(w, r, s)
	case rest == "events/get_events":
		longPoll(w, r)
	case rest == "recorded":
		a.mu.Lock()
		out := append([]seen(nil), a.recorded...)
		a.mu.Unlock()
		writeJSON(w, out)
	default:
		writeJSON(w, s)
	}
}

func describe(r *http.Request) seen {
	h := make(map[string][]string, len(r.Header))
	for k, v := range r.Header {
		if k == "Authorization" {
			v = []string{"token [redacted]"}
		}
		h[k] = append([]string(nil), v...)
	}
	return seen{Method: r.Method, Path: r.URL.Path, Host: r.Host, Proto: r.Proto, Headers: h}
}

func hasSegment(p, seg string) bool {
	for _, s := range strings.Split(p, "/") {
		if s == seg {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// websocket reports the upgrade request, then echoes.
func (a *app) websocket(w http.ResponseWriter, r *http.Request, s seen) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	hello, _ := json.Marshal(s)
	if err := c.Write(ctx, websocket.MessageText, hello); err != nil {
		return
	}
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				_ = c.Close(websocket.StatusNormalClosure, "")
			}
			return
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return
		}
	}
}

// longPoll writes a first chunk at once and a second one later, flushing
// each, as rsession answers get_events when an event arrives.
func longPoll(w http.ResponseWriter, r *http.Request) {
	wait := 2000
	if v, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil && v >= 0 && v <= 10000 {
		wait = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	fl, _ := w.(http.Flusher)
	fmt.Fprintln(w, `{"chunk":1}`)
	if fl != nil {
		fl.Flush()
	}
	select {
	case <-time.After(time.Duration(wait) * time.Millisecond):
	case <-r.Context().Done():
		return
	}
	fmt.Fprintln(w, `{"chunk":2}`)
}
