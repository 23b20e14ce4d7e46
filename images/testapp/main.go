// Command testapp is the tiny web application hubgate's tests run as a user
// server. It honours the container contract described in DESIGN.md: it serves
// only under $HUBGATE_BASE_URL, refuses every request that does not carry
// "Authorization: token $HUBGATE_TOKEN", and keeps files in $HOME, which is
// the user's volume.
//
// Endpoints, all relative to the prefix:
//
//	GET  ""  or  "whoami"   JSON: user, base_url, path, host, headers, hostname
//	GET  "html"             a small HTML page greeting the user
//	PUT  "files/NAME"       stores the body as $HOME/NAME
//	GET  "files/NAME"       returns $HOME/NAME (404 when missing)
//	DELETE "files/NAME"     removes $HOME/NAME
//	                        (NAME may have folders: "a/b.txt"; PUT makes them)
//	GET  "ws"               websocket echo (text and binary)
//	GET  "env"              JSON of HUBGATE_*, JUPYTERHUB_* and GIT_* variables
//	GET  "slow?ms=N"        answers after N milliseconds
//
// Given the argument -crash it exits at once with status 3; with
// TESTAPP_START_DELAY set (a Go duration) it waits that long before it
// listens.
//
// The Authorization header is reported as "token [redacted]" by whoami and
// HUBGATE_TOKEN as "set" by env: the app never echoes its secret.
package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// config is what the app reads from its environment.
type config struct {
	Port    string
	Token   string
	BaseURL string
	User    string
	Home    string
}

// maxFileBytes bounds the body of a PUT to files/NAME.
const maxFileBytes = 16 << 20

// maxSlow bounds the delay slow?ms=N may ask for.
const maxSlow = 10 * time.Minute

// redacted replaces the token wherever the app would otherwise echo it.
const redacted = "token [redacted]"

// fileName is the shape of a name accepted under files/.
var fileName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func main() {
	for _, arg := range os.Args[1:] {
		// -crash makes the app exit at once, so tests can see how the
		// gateway reports a server that dies while it starts.
		if arg == "-crash" {
			fmt.Fprintln(os.Stderr, "testapp: crashing on purpose (-crash)")
			os.Exit(3)
		}
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

// run serves until SIGTERM or SIGINT, then shuts down within 2 seconds.
func run() error {
	cfg, err := configFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	// TESTAPP_START_DELAY (a Go duration) delays listening, to stand in for
	// an app that takes a while to start.
	if d, err := time.ParseDuration(os.Getenv("TESTAPP_START_DELAY")); err == nil && d > 0 {
		fmt.Fprintf(os.Stdout, "testapp waiting %s before listening\n", d)
		time.Sleep(d)
	}
	ln, err := net.Listen("tcp", ":"+cfg.Port)
	if err != nil {
		return fmt.Errorf("listen on :%s: %w", cfg.Port, err)
	}
	srv := &http.Server{
		Handler:           newHandler(cfg),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	fmt.Fprintf(os.Stdout, "testapp listening on :%s prefix %s\n", cfg.Port, cfg.BaseURL)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// Hijacked (websocket) and slow connections are cut off here.
		_ = srv.Close()
	}
	fmt.Fprintln(os.Stdout, "testapp stopped")
	return nil
}

// configFromEnv reads the configuration through getenv and checks it.
func configFromEnv(getenv func(string) string) (config, error) {
	cfg := config{
		Port:    getenv("PORT"),
		Token:   getenv("HUBGATE_TOKEN"),
		BaseURL: getenv("HUBGATE_BASE_URL"),
		User:    getenv("HUBGATE_USER"),
		Home:    getenv("HOME"),
	}
	if cfg.Port == "" {
		cfg.Port = "8888"
	}
	if cfg.Home == "" {
		cfg.Home = "/home/hubgate"
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = "/"
	}
	if cfg.Token == "" {
		return cfg, errors.New("HUBGATE_TOKEN is empty: refusing to start without a token")
	}
	if !strings.HasPrefix(cfg.BaseURL, "/") || !strings.HasSuffix(cfg.BaseURL, "/") {
		return cfg, fmt.Errorf("HUBGATE_BASE_URL %q must start and end with /", cfg.BaseURL)
	}
	if n, err := strconv.Atoi(cfg.Port); err != nil || n < 1 || n > 65535 {
		return cfg, fmt.Errorf("PORT %q is not a port number", cfg.Port)
	}
	return cfg, nil
}

// app holds the handlers' configuration.
type app struct {
	cfg  config
	want []byte // the exact Authorization header value expected
}

// newHandler returns the app's HTTP handler for cfg.
func newHandler(cfg config) http.Handler {
	return &app{cfg: cfg, want: []byte("token " + cfg.Token)}
}

// ServeHTTP checks the token, then the prefix, then routes.
func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	got := []byte(r.Header.Get("Authorization"))
	if subtle.ConstantTimeCompare(got, a.want) != 1 {
		http.Error(w, "forbidden: missing or wrong hubgate token", http.StatusForbidden)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, a.cfg.BaseURL)
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch {
	case rest == "" || rest == "whoami":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		a.whoami(w, r)
	case rest == "html":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		a.html(w)
	case rest == "env":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		a.env(w)
	case rest == "slow":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		a.slow(w, r)
	case rest == "ws":
		a.ws(w, r)
	case strings.HasPrefix(rest, "files/"):
		a.files(w, r, strings.TrimPrefix(rest, "files/"))
	default:
		http.NotFound(w, r)
	}
}

// allow answers 405 and returns false unless r's method is one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// writeJSON writes v as an indented JSON response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// whoami describes the request as the app saw it.
func (a *app) whoami(w http.ResponseWriter, r *http.Request) {
	headers := r.Header.Clone()
	if headers.Get("Authorization") != "" {
		headers.Set("Authorization", redacted)
	}
	hostname, _ := os.Hostname()
	writeJSON(w, http.StatusOK, map[string]any{
		"user":     a.cfg.User,
		"base_url": a.cfg.BaseURL,
		"path":     r.URL.Path,
		"host":     r.Host,
		"headers":  headers,
		"hostname": hostname,
	})
}

// page is the HTML served at {prefix}html.
var page = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>testapp</title></head>
<body>
<h1 id="who">hello {{.User}}</h1>
<p>base url <code id="base">{{.BaseURL}}</code></p>
</body>
</html>
`))

// html serves a small page greeting the user.
func (a *app) html(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, a.cfg)
}

// env reports the contract's variables, never the token's value.
func (a *app) env(w http.ResponseWriter) {
	out := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "HUBGATE_") && !strings.HasPrefix(k, "JUPYTERHUB_") && !strings.HasPrefix(k, "GIT_") {
			continue
		}
		if k == "HUBGATE_TOKEN" {
			v = "set"
		}
		out[k] = v
	}
	writeJSON(w, http.StatusOK, out)
}

// slow answers after ?ms=N milliseconds, or earlier if the client leaves.
func (a *app) slow(w http.ResponseWriter, r *http.Request) {
	ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
	if err != nil || ms < 0 {
		http.Error(w, "bad ms: want a non-negative integer", http.StatusBadRequest)
		return
	}
	d := time.Duration(ms) * time.Millisecond
	if d > maxSlow {
		d = maxSlow
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"slept_ms": int(d / time.Millisecond)})
}

// files stores and serves files in the home directory.
func (a *app) files(w http.ResponseWriter, r *http.Request, name string) {
	if strings.Contains(strings.ToLower(r.URL.EscapedPath()), "%2f") {
		http.Error(w, "bad file name", http.StatusBadRequest)
		return
	}
	for _, part := range strings.Split(name, "/") {
		if !fileName.MatchString(part) || strings.Contains(part, "..") || part == "." {
			http.Error(w, "bad file name", http.StatusBadRequest)
			return
		}
	}
	p := filepath.Join(a.cfg.Home, filepath.FromSlash(name))
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			http.Error(w, "open: "+err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.Copy(w, f)
	case http.MethodPut:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFileBytes))
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			http.Error(w, "make home: "+err.Error(), http.StatusInternalServerError)
			return
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			http.Error(w, "write: "+err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"name": name, "bytes": len(body)})
	case http.MethodDelete:
		if err := os.Remove(p); errors.Is(err, os.ErrNotExist) {
			http.NotFound(w, r)
			return
		} else if err != nil {
			http.Error(w, "remove: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		allow(w, r, http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete)
	}
}

// ws echoes every websocket message back with its type.
func (a *app) ws(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// The gateway checks the origin; the app only checks the token.
		InsecureSkipVerify: true,
	})
	if err != nil {
		return // Accept has written the error response.
	}
	defer c.CloseNow()
	c.SetReadLimit(maxFileBytes)
	ctx := r.Context()
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
