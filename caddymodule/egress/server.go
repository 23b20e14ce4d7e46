package egress

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Server is a Proxy on its own listener. It outlives config reloads (the
// glue keeps it in a usage pool): each loaded config adds its View, the
// newest one still loaded is followed, and the listener stays open
// across the swap, so no tunnel is cut by a reload.
type Server struct {
	proxy  *Proxy
	logger *zap.Logger

	mu    sync.Mutex
	views []*View
	ln    net.Listener
	srv   *http.Server
	addr  string
}

// Proxy is the server's handler.
func (s *Server) Proxy() *Proxy { return s.proxy }

// NewServer returns a server for proxy; it listens once Listen is called.
func NewServer(proxy *Proxy, logger *zap.Logger) *Server {
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Server{proxy: proxy, logger: logger}
}

// AddView makes v the view followed until it is removed with the
// returned func (idempotent). Removing the newest view falls back to the
// one added before it that is still there.
func (s *Server) AddView(v *View) (remove func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.views = append(s.views, v)
	s.proxy.SetView(v)
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			for i, cur := range s.views {
				if cur == v {
					s.views = append(s.views[:i], s.views[i+1:]...)
					break
				}
			}
			if n := len(s.views); n > 0 {
				s.proxy.SetView(s.views[n-1])
			}
		})
	}
}

// Listen makes the server listen on addr ("ip:port"), if it does not
// already; a server listening elsewhere moves (its tunnels stay open).
func (s *Server) Listen(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil && s.addr == addr {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("egress proxy: listen on %s: %w", addr, err)
	}
	if s.srv != nil {
		_ = s.srv.Close()
	}
	srv := &http.Server{
		Handler:           s.proxy,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// The net/http server's own messages (TLS junk, bad requests) go
		// to the log at debug level; they never contain credentials.
		ErrorLog: log.New(zapWriter{s.logger}, "", 0),
	}
	s.ln, s.srv, s.addr = ln, srv, ln.Addr().String()
	s.logger.Info("egress proxy listening", zap.String("address", s.addr))
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("egress proxy stopped", zap.Error(err))
		}
	}()
	return nil
}

// Addr is the address listened on, "" before Listen.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Destruct closes the listener and every connection, when the last
// config using the server is unloaded.
func (s *Server) Destruct() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	err := s.srv.Close()
	s.srv, s.ln, s.addr = nil, nil, ""
	return err
}

type zapWriter struct{ l *zap.Logger }

func (w zapWriter) Write(b []byte) (int, error) {
	w.l.Debug(string(b))
	return len(b), nil
}
