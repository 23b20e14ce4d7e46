package hub

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// Streams tracks the upgraded (websocket) connections proxied, so that a
// logout, a revoked session, a policy change or a lost membership can end
// them at once. They are few (one per open notebook tab), so closing scans
// them all.
type Streams struct {
	mu   sync.Mutex
	open map[*Stream]struct{}
}

// Stream is one open websocket: whose session, user and groups it was
// opened with, and to which server.
type Stream struct {
	SessionID, User, Server string
	Groups                  []string
	// Owner is whose server it is when the visitor is not the owner, and
	// Grant the share or access grant it was opened under (else empty).
	Owner, Grant string
	OwnerGroups  []string
	// Expires is when the session it was opened with ends (zero: never).
	Expires time.Time
	cancel  context.CancelFunc
}

func newStreams() *Streams {
	return &Streams{open: make(map[*Stream]struct{})}
}

// add registers a stream of a session to one of its user's servers; the
// returned func unregisters it.
func (s *Streams) add(v Visitor, server string, cancel context.CancelFunc) func() {
	st := &Stream{SessionID: v.SessionID, User: v.User, Server: server, Groups: v.Groups, Owner: v.Owner, OwnerGroups: v.OwnerGroups, Grant: v.Grant, Expires: v.Expires, cancel: cancel}
	s.mu.Lock()
	s.open[st] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.open, st)
		s.mu.Unlock()
	}
}

// CloseIf ends every stream for which match holds and reports how many.
func (s *Streams) CloseIf(match func(*Stream) bool) int {
	s.mu.Lock()
	var cancels []context.CancelFunc
	for st := range s.open {
		if match(st) {
			cancels = append(cancels, st.cancel)
		}
	}
	s.mu.Unlock()
	for _, c := range cancels {
		c()
	}
	return len(cancels)
}

// CloseSession ends every stream of one session.
func (s *Streams) CloseSession(sid string) int {
	return s.CloseIf(func(st *Stream) bool { return st.SessionID == sid })
}

// CloseUser ends every stream of one user.
func (s *Streams) CloseUser(user string) int {
	return s.CloseIf(func(st *Stream) bool { return st.User == user })
}

// CloseDenied ends every stream that allowed(user, groups, server) no
// longer permits, after a policy change.
// A guest's stream (Owner set) is judged by the owner's right to the
// server and the visitor's being known; its grant is checked by whoever
// revokes it (CloseGrant).
func (s *Streams) CloseDenied(allowed func(user string, groups []string, server string) bool) int {
	return s.CloseIf(func(st *Stream) bool {
		if st.Owner != "" {
			return !allowed(st.Owner, st.OwnerGroups, st.Server)
		}
		return !allowed(st.User, st.Groups, st.Server)
	})
}

// CloseGrant ends every stream opened under a share or access grant.
func (s *Streams) CloseGrant(id string) int {
	return s.CloseIf(func(st *Stream) bool { return st.Grant != "" && st.Grant == id })
}

// activityWriter is the ResponseWriter given to the reverse proxy for an
// upgrade request: the hijacked connection it hands out records activity
// on the route whenever a websocket data frame passes, in either
// direction. Control frames (ping, pong, close) are not activity, so an
// idle tab that only keeps its connection alive can still be culled.
type activityWriter struct {
	http.ResponseWriter
	r *Route
	// stream says the websocket is this response's body (HTTP/2, HTTP/3).
	stream bool
	out    frameScanner
}

// Write scans the app's frames of an HTTP/2 or HTTP/3 websocket.
func (w *activityWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	if w.stream && w.out.sawData(p[:n]) {
		w.r.touch()
	}
	return n, err
}

// Hijack implements http.Hijacker.
func (w *activityWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return &activityConn{Conn: conn, r: w.r}, brw, nil
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *activityWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// activityConn watches the websocket frames crossing a hijacked client
// connection: reads are the browser's frames, writes the app's.
type activityConn struct {
	net.Conn
	r       *Route
	in, out frameScanner
}

func (c *activityConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.in.sawData(p[:n]) {
		c.r.touch()
	}
	return n, err
}

func (c *activityConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.out.sawData(p[:n]) {
		c.r.touch()
	}
	return n, err
}

// frameScanner follows the frame boundaries of one direction of a
// websocket (RFC 6455 section 5.2) without copying payloads: it reads each
// header, then skips the payload length it announced.
type frameScanner struct {
	// mu serialises scans: a direction is copied by one goroutine, but
	// a graceful close may write a close frame from another.
	mu        sync.Mutex
	hdr       [14]byte
	hn        int    // header bytes collected
	need      int    // header length, known after two bytes
	remaining uint64 // payload bytes still to skip
	data      bool   // the current frame is a data frame
}

// sawData is scan under the scanner's lock.
func (f *frameScanner) sawData(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.scan(p)
}

// scan consumes p and reports whether it carried any data-frame bytes
// (text, binary or continuation frames, including empty ones).
func (f *frameScanner) scan(p []byte) bool {
	seen := false
	for len(p) > 0 {
		if f.remaining > 0 {
			n := uint64(len(p))
			if n > f.remaining {
				n = f.remaining
			}
			p = p[n:]
			f.remaining -= n
			seen = seen || f.data
			continue
		}
		f.hdr[f.hn] = p[0]
		f.hn++
		p = p[1:]
		if f.hn == 2 {
			f.need = 2
			switch f.hdr[1] & 0x7f {
			case 126:
				f.need += 2
			case 127:
				f.need += 8
			}
			if f.hdr[1]&0x80 != 0 {
				f.need += 4
			}
		}
		if f.hn < 2 || f.hn < f.need {
			continue
		}
		var length uint64
		switch l := f.hdr[1] & 0x7f; l {
		case 126:
			length = uint64(f.hdr[2])<<8 | uint64(f.hdr[3])
		case 127:
			for i := 2; i < 10; i++ {
				length = length<<8 | uint64(f.hdr[i])
			}
		default:
			length = uint64(l)
		}
		f.data = f.hdr[0]&0x0f <= 0x2
		seen = seen || f.data
		f.remaining = length
		f.hn, f.need = 0, 0
	}
	return seen
}
