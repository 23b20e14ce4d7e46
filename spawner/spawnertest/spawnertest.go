// Package spawnertest is an in-memory spawner.Spawner for in-process tests
// of the gateway: each "container" is a real HTTP server on loopback that
// checks the container secret it was given (as the images do) and answers
// with the request it saw, so tests can assert what reached the app. It
// counts every call, so a test can prove the steady state makes none.
package spawnertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hubgate/hubgate/spawner"
	"github.com/hubgate/hubgate/spawner/contract"
)

// Spawner runs "containers" as loopback HTTP servers.
type Spawner struct {
	// StartDelay delays each app's first answer (a slow start).
	StartDelay time.Duration
	// Fail, if set, makes Ensure fail with it.
	Fail error
	// NextAddr, if set, is the address the next started app listens on
	// (to recycle a stopped app's address, as an engine reuses IPs).
	NextAddr string

	calls atomic.Int64
	mu    sync.Mutex
	run   map[string]*app
	// Specs are the specs Ensure was called with, in order.
	Specs []spawner.Spec
}

type app struct {
	mu    sync.Mutex
	seen  []Seen // every request the app received
	inst  spawner.Instance
	srv   *http.Server
	ready time.Time
}

// New returns an empty spawner.
func New() *Spawner { return &Spawner{run: map[string]*app{}} }

// Calls counts the calls made to the spawner so far.
func (s *Spawner) Calls() int64 { return s.calls.Load() }

func key(user, server string) string { return user + "\x00" + server }

// Seen is what an app answers: the request it received.
type Seen struct {
	Method string              `json:"method"`
	Path   string              `json:"path"`
	Header map[string][]string `json:"header"`
	User   string              `json:"user"`
}

// Ensure starts (or finds) the user's server.
func (s *Spawner) Ensure(_ context.Context, spec spawner.Spec) (spawner.Instance, error) {
	s.calls.Add(1)
	if err := spec.Validate(); err != nil {
		return spawner.Instance{}, err
	}
	if s.Fail != nil {
		return spawner.Instance{}, s.Fail
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Specs = append(s.Specs, spec)
	if a, ok := s.run[key(spec.User, spec.Server)]; ok {
		return a.inst, nil
	}
	spec.Report(spawner.StepVolume)
	spec.Report(spawner.StepCreate)
	spec.Report(spawner.StepStart)
	addr := "127.0.0.1:0"
	if s.NextAddr != "" {
		addr, s.NextAddr = s.NextAddr, ""
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return spawner.Instance{}, err
	}
	token := spec.Env[contract.Token]
	a := &app{ready: time.Now().Add(s.StartDelay)}
	a.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if time.Now().Before(a.ready) {
			// Not listening yet, as far as a client can tell.
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				_ = c.Close()
			}
			return
		}
		a.mu.Lock()
		a.seen = append(a.seen, Seen{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), User: spec.User})
		a.mu.Unlock()
		if r.Header.Get("Authorization") != "token "+token {
			http.Error(w, "wrong token", http.StatusForbidden)
			return
		}
		// What an app might try: set cookies, redirect anywhere.
		q := r.URL.Query()
		for _, c := range q["set-cookie"] {
			w.Header().Add("Set-Cookie", c)
		}
		if v := q.Get("refresh"); v != "" {
			w.Header().Set("Refresh", v)
		}
		w.Header().Set("Content-Type", "application/json")
		if vs := q["location"]; len(vs) > 0 {
			w.Header()["Location"] = vs
			w.WriteHeader(http.StatusFound)
		}
		_ = json.NewEncoder(w).Encode(Seen{Method: r.Method, Path: r.URL.Path, Header: r.Header, User: spec.User})
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = a.srv.Serve(ln) }()
	a.inst = spawner.Instance{
		ID: fmt.Sprintf("fake-%d", len(s.Specs)), Name: spec.User + "-" + spec.Server, User: spec.User, Server: spec.Server,
		Image: spec.Image, Nonce: spec.Nonce, Addr: ln.Addr().String(), Created: time.Now(), Started: time.Now(),
		Running: true, Status: "running", Meta: spec.Meta,
	}
	s.run[key(spec.User, spec.Server)] = a
	return a.inst, nil
}

// Get returns the user's server.
func (s *Spawner) Get(_ context.Context, user, server string) (spawner.Instance, error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.run[key(user, server)]; ok {
		return a.inst, nil
	}
	return spawner.Instance{}, spawner.ErrNotFound
}

// List returns every server.
func (s *Spawner) List(context.Context) ([]spawner.Instance, error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]spawner.Instance, 0, len(s.run))
	for _, a := range s.run {
		out = append(out, a.inst)
	}
	return out, nil
}

// Received returns every request the running app of user's server got,
// including refused ones.
func (s *Spawner) Received(user, server string) []Seen {
	s.mu.Lock()
	a := s.run[key(user, server)]
	s.mu.Unlock()
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Seen(nil), a.seen...)
}

// Kill stops an app without the runtime hearing of it (a missed exit
// event), and returns its address.
func (s *Spawner) Kill(user, server string) string {
	s.mu.Lock()
	a := s.run[key(user, server)]
	delete(s.run, key(user, server))
	s.mu.Unlock()
	if a == nil {
		return ""
	}
	_ = a.srv.Close()
	return a.inst.Addr
}

// Stop stops the server.
func (s *Spawner) Stop(_ context.Context, user, server string) error {
	s.calls.Add(1)
	s.mu.Lock()
	a, ok := s.run[key(user, server)]
	delete(s.run, key(user, server))
	s.mu.Unlock()
	if !ok {
		return spawner.ErrNotFound
	}
	return a.srv.Close()
}

// Logs returns what such an app might print, its secret included (the
// gateway must not show that to anyone).
func (s *Spawner) Logs(_ context.Context, user, server string, _ int) (string, error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, spec := range s.Specs {
		if spec.User == user && spec.Server == server {
			return "starting the fake app\nmy token is " + spec.Env[contract.Token] + "\nlistening soon\n", nil
		}
	}
	return "", spawner.ErrNotFound
}

// RemoveVolume is a no-op.
func (s *Spawner) RemoveVolume(context.Context, string) error {
	s.calls.Add(1)
	return nil
}

// Close stops every app.
func (s *Spawner) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, a := range s.run {
		_ = a.srv.Close()
		delete(s.run, k)
	}
	return nil
}

var _ spawner.Spawner = (*Spawner)(nil)
