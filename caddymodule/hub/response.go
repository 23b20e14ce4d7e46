package hub

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/hubgate/hubgate/caddymodule/session"
)

// responseFilter stands between a user's app and the browser: before the
// app's response headers are written it drops every Set-Cookie naming one
// of hubgate's cookies (any case, any attributes), and a Location or
// Refresh that leaves the server's own prefix, so code in a container can
// neither swap the hub's session nor send the browser to the hub's pages
// or elsewhere.
type responseFilter struct {
	http.ResponseWriter
	host, prefix string
	wrote        bool
	dropped      int
}

func (f *responseFilter) filter() {
	if f.wrote {
		return
	}
	f.wrote = true
	hdr := f.ResponseWriter.Header()
	if cookies := hdr["Set-Cookie"]; len(cookies) > 0 {
		kept := cookies[:0:0]
		for _, c := range cookies {
			name, _, _ := strings.Cut(c, "=")
			if session.IsOurCookie(strings.TrimSpace(name)) {
				f.dropped++
				continue
			}
			kept = append(kept, c)
		}
		if len(kept) == 0 {
			delete(hdr, "Set-Cookie")
		} else {
			hdr["Set-Cookie"] = kept
		}
	}
	// The keys are canonical: Caddy copies the upstream response's
	// header, which net/http's reader canonicalized (and hdr.Get would
	// canonicalize the key again on every response).
	if loc := hdr["Location"]; len(loc) > 0 && (len(loc) > 1 || !f.within(loc[0])) {
		delete(hdr, "Location")
		f.dropped++
	}
	if ref := hdr["Refresh"]; len(ref) > 0 {
		// "5; url=/somewhere" or just "5".
		if _, target, ok := strings.Cut(ref[0], "="); len(ref) > 1 || (ok && !f.within(strings.Trim(strings.TrimSpace(target), `'"`))) {
			delete(hdr, "Refresh")
			f.dropped++
		}
	}
}

// within reports whether a redirect target stays on this host under the
// server's prefix (relative references resolve within it).
func (f *responseFilter) within(target string) bool {
	u, err := url.Parse(strings.TrimSpace(target))
	if err != nil {
		return false
	}
	if u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return (u.Scheme == "https" || u.Scheme == "http" || u.Scheme == "wss" || u.Scheme == "ws") &&
			strings.EqualFold(u.Host, f.host) && u.User == nil && strings.HasPrefix(cleanPath(u.Path), f.prefix)
	}
	if !strings.HasPrefix(u.Path, "/") {
		return true // relative to the current path, which is under the prefix
	}
	return strings.HasPrefix(cleanPath(u.Path)+"/", f.prefix) || strings.HasPrefix(cleanPath(u.Path), f.prefix)
}

func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	u := &url.URL{Path: p}
	return u.JoinPath().Path
}

func (f *responseFilter) WriteHeader(status int) {
	f.filter()
	f.ResponseWriter.WriteHeader(status)
}

func (f *responseFilter) Write(p []byte) (int, error) {
	f.filter()
	return f.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer
// (flushing, hijacking for websockets).
func (f *responseFilter) Unwrap() http.ResponseWriter { return f.ResponseWriter }
