package hub

import (
	"net/http"
	"strings"
)

// Which request headers reach a user's app is decided here, by rule, not
// by a list of known names, since every gateway and app has its own:
//
//   - identity: a header whose name claims who the client is, in any
//     vendor's spelling, any case, '_' read as '-': a name with a word such
//     as user, email, group, login, principal, identity, role, assertion,
//     jwt, authenticated or authorization in it, a word name after display,
//     full, given, family, preferred, first or last, access-token or
//     id-token, or one of the prefixes remote-, x-remote-, x-hubgate-,
//     x-jupyterhub-, x-auth-request-, cf-access-, x-ms-client-principal,
//     x-amzn-oidc-, x-pomerium-. Exceptions: User-Agent and
//     Sec-Fetch-User, which browsers send and which say nothing of who.
//   - forwarding: X-Real-IP, Forwarded, X-Original-*, X-Rewrite-URL,
//     X-Scheme, X-Forwarded-Prefix/-Server/-Port/-Ssl/-Uri, Client-IP,
//     True-Client-IP, CF-Connecting-IP: only the gateway says where a
//     request came from (Caddy's proxy sets X-Forwarded-For/-Proto/-Host).
//   - operators add names of their own (ProxyConfig.StripHeaders).
//
// Both headers and trailers are filtered, and the Connection header is
// reduced to the tokens a client may legitimately list (keep-alive, close,
// upgrade), so a client cannot make the proxy drop what the gateway adds.

// identityWords are the words that make a header name an identity claim.
var identityWords = map[string]bool{
	"user": true, "users": true, "username": true, "userid": true, "uid": true, "upn": true,
	"email": true, "mail": true, "group": true, "groups": true, "login": true,
	"principal": true, "identity": true, "role": true, "roles": true, "assertion": true,
	"jwt": true, "authenticated": true, "authorization": true, "authorisation": true,
	"authuser": true, "remoteuser": true, "subject": true, "sub": true,
}

// nameQualifiers make a following "name" an identity claim ("x-display-name").
var nameQualifiers = map[string]bool{
	"display": true, "full": true, "given": true, "family": true, "preferred": true, "first": true, "last": true, "real": true,
}

var identityPrefixes = []string{
	"remote-", "x-remote-", "x-hubgate-", "x-jupyterhub-", "x-auth-request-", "cf-access-",
	"x-ms-client-principal", "x-amzn-oidc-", "x-pomerium-", "x-goog-authenticated-",
}

var forwardingNames = map[string]bool{
	"x-real-ip": true, "forwarded": true, "x-rewrite-url": true, "x-scheme": true,
	"x-forwarded-prefix": true, "x-forwarded-server": true, "x-forwarded-port": true,
	"x-forwarded-ssl": true, "x-forwarded-uri": true, "x-forwarded-path": true, "x-forwarded-scheme": true,
	"client-ip": true, "true-client-ip": true, "cf-connecting-ip": true, "x-client-ip": true,
	"x-cluster-client-ip": true, "x-original-forwarded-for": true, "proxy-authorization": true,
}

var browserExceptions = map[string]bool{"user-agent": true, "sec-fetch-user": true}

// normalizeName lower-cases a header name and reads '_' as '-'.
func normalizeName(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "_", "-"))
}

// IsIdentityHeader reports whether a request header claims who the client
// is; only the gateway may send those.
func IsIdentityHeader(name string) bool {
	n := normalizeName(name)
	if browserExceptions[n] {
		return false
	}
	for _, p := range identityPrefixes {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	words := strings.FieldsFunc(n, func(r rune) bool { return r == '-' || r == '.' })
	for i, w := range words {
		if identityWords[w] {
			return true
		}
		if w == "name" && i > 0 && nameQualifiers[words[i-1]] {
			return true
		}
		if w == "token" && i > 0 && (words[i-1] == "access" || words[i-1] == "id" || words[i-1] == "auth") {
			return true
		}
	}
	return false
}

// IsForwardingHeader reports a header that says where a request came from,
// which only the gateway may say.
func IsForwardingHeader(name string) bool {
	n := normalizeName(name)
	return forwardingNames[n] || strings.HasPrefix(n, "x-original-")
}

// headerRules is the compiled rule plus operators' extra names.
type headerRules struct {
	extra map[string]bool // normalized
	// verdict caches the rule's answer per header name as the client
	// spelled it, so the hot path does a map lookup per header.
	verdict map[string]bool
}

func newHeaderRules(extra []string) *headerRules {
	h := &headerRules{extra: map[string]bool{}, verdict: map[string]bool{}}
	for _, e := range extra {
		h.extra[normalizeName(e)] = true
	}
	// Pre-decide the names browsers and clients send all the time.
	for _, n := range []string{"Accept", "Accept-Encoding", "Accept-Language", "Cache-Control", "Connection", "Content-Length",
		"Content-Type", "Cookie", "Origin", "Pragma", "Referer", "Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site",
		"Sec-Fetch-User", "Sec-Websocket-Extensions", "Sec-Websocket-Key", "Sec-Websocket-Version", "Upgrade",
		"User-Agent", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Requested-With", "X-Xsrftoken",
		"Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Priority", "Dnt", "If-None-Match", "If-Modified-Since", "Range"} {
		h.verdict[n] = h.strip(n)
	}
	return h
}

// strip decides one header name.
func (h *headerRules) strip(name string) bool {
	return IsIdentityHeader(name) || IsForwardingHeader(name) || h.extra[normalizeName(name)]
}

// stripped reports whether a header must not reach the app; names seen
// before are a map lookup.
func (h *headerRules) stripped(name string) bool {
	if v, ok := h.verdict[name]; ok {
		return v
	}
	return h.strip(name)
}

// apply removes from a request every header and trailer the rule strips,
// and reduces Connection to keep-alive, close and upgrade.
func (h *headerRules) apply(r *http.Request) {
	for k := range r.Header {
		if h.stripped(k) {
			delete(r.Header, k)
		}
	}
	for k := range r.Trailer {
		if h.stripped(k) {
			delete(r.Trailer, k)
		}
	}
	if conn, ok := r.Header["Connection"]; ok {
		kept := conn[:0:0]
		for _, line := range conn {
			for _, tok := range strings.Split(line, ",") {
				switch t := strings.ToLower(strings.TrimSpace(tok)); t {
				case "keep-alive", "close", "upgrade":
					kept = append(kept, t)
				}
			}
		}
		if len(kept) == 0 {
			delete(r.Header, "Connection")
		} else {
			r.Header["Connection"] = []string{strings.Join(kept, ", ")}
		}
	}
}
