package session

import (
	"net/http"
	"strings"
	"time"
)

// Cookie names. The __Host- prefix makes browsers insist on Secure, Path=/
// and no Domain, so no sibling host can set or read them.
const (
	// CookiePrefix starts the name of every hubgate cookie; cookies with
	// it are never forwarded to, nor accepted from, user containers.
	CookiePrefix = "__Host-hubgate-"
	// SessionCookie holds the sealed Session.
	SessionCookie = CookiePrefix + "session"
	// LoginCookie binds the local login form to the browser that loaded it.
	LoginCookie = CookiePrefix + "login"
	// OAuthCookie holds the sealed state, nonce and PKCE verifier of an
	// OIDC or GitHub login in progress.
	OAuthCookie = CookiePrefix + "oauth"
	// IDTokenCookie keeps the OIDC ID token for RP-initiated logout.
	IDTokenCookie = CookiePrefix + "idt"
)

// IsOurCookie reports whether a cookie name is one of hubgate's, in any
// letter case (browsers compare names exactly, but an app must not be able
// to shadow ours with a look-alike either).
func IsOurCookie(name string) bool {
	return len(name) >= len(CookiePrefix) && strings.EqualFold(name[:len(CookiePrefix)], CookiePrefix)
}

// CookieValue finds one cookie in the request's Cookie headers without
// parsing (and allocating) all of them. It returns "" when it is absent.
func CookieValue(hdr http.Header, name string) string {
	for _, line := range hdr["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if len(part) > len(name) && part[len(name)] == '=' && part[:len(name)] == name {
				v := part[len(name)+1:]
				if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v
			}
		}
	}
	return ""
}

// SetCookie sets one of hubgate's cookies: Secure, HttpOnly, Path=/, no
// Domain (host-only), with the given lifetime and SameSite mode.
func SetCookie(w http.ResponseWriter, name, value string, maxAge time.Duration, sameSite http.SameSite) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   int(maxAge / time.Second),
		Secure:   true,
		HttpOnly: true,
		SameSite: sameSite,
	})
}

// ClearCookie removes one of hubgate's cookies from the browser.
func ClearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// StripOurCookies removes hubgate's cookies from a request's Cookie
// header, keeping the app's own cookies (Jupyter's _xsrf, RStudio's)
// untouched.
func StripOurCookies(hdr http.Header) {
	lines := hdr["Cookie"]
	if len(lines) == 0 {
		return
	}
	if len(lines) == 1 && !containsFold(lines[0], CookiePrefix) {
		return // nothing of ours: keep the header as it is
	}
	if len(lines) == 1 && !strings.Contains(lines[0], ";") {
		// One cookie only (API clients, the session alone): no split.
		if name, _, _ := strings.Cut(lines[0], "="); IsOurCookie(strings.TrimSpace(name)) {
			delete(hdr, "Cookie")
		}
		return
	}
	var kept []string
	changed := false
	for _, line := range lines {
		for _, part := range strings.Split(line, ";") {
			p := strings.TrimSpace(part)
			if p == "" {
				continue
			}
			name, _, _ := strings.Cut(p, "=")
			if IsOurCookie(strings.TrimSpace(name)) {
				changed = true
				continue
			}
			kept = append(kept, p)
		}
	}
	if !changed && len(lines) == 1 {
		return
	}
	if len(kept) == 0 {
		hdr.Del("Cookie")
		return
	}
	hdr.Set("Cookie", strings.Join(kept, "; "))
}

// containsFold reports whether s contains sub, ASCII case-insensitively,
// without allocating.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
