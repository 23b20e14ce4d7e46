// Package reqkind tells what kind of request the gateway is looking at:
// an upgrade to another protocol (a websocket, over HTTP/1.1, HTTP/2 or
// HTTP/3), a browser navigation, a form post. Every decision that depends
// on it (register a websocket, show a page or JSON, redirect or refuse)
// asks these functions, so the answer is the same everywhere.
package reqkind

import (
	"net/http"
	"strings"
)

// IsUpgrade reports a request that turns into a long-lived stream: an
// HTTP/1.1 `Upgrade` (websocket), or an RFC 8441 / RFC 9220 extended
// CONNECT over HTTP/2 or HTTP/3 (`:protocol` = websocket), which Caddy's
// reverse proxy turns into GET + Upgrade towards the backend.
func IsUpgrade(r *http.Request) bool {
	if r.Method == http.MethodConnect {
		// Go's HTTP/2 server keeps the extended CONNECT's :protocol as a
		// header; quic-go's HTTP/3 server puts it in r.Proto. These are
		// the two forms Caddy's reverse proxy upgrades.
		switch r.ProtoMajor {
		case 2:
			return r.Header.Get(":protocol") != ""
		case 3:
			return r.Proto != "" && !strings.HasPrefix(r.Proto, "HTTP/")
		}
		return false
	}
	return r.Header.Get("Upgrade") != ""
}

// WantsHTML reports a browser navigating to a page, as opposed to an XHR,
// fetch, API or websocket client, which get JSON.
func WantsHTML(r *http.Request) bool {
	if IsUpgrade(r) {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// IsFormPost reports an HTML form submission (answered with a page too).
func IsFormPost(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded")
}

// IsSafeMethod reports methods that change no state.
func IsSafeMethod(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}
