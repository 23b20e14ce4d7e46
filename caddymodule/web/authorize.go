package web

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/hubgate/hubgate/caddymodule/reqkind"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/caddymodule/shares"
	"github.com/hubgate/hubgate/policies"
)

// UserPath is a parsed /user/{name}/{server}/... path.
type UserPath struct {
	Name, Server, Tail string
	// Canonical is false when the request's own spelling differs from the
	// canonical prefix; such a request is redirected or refused, never
	// proxied.
	Canonical bool
}

// ParseUserPath reads the user and server from the cleaned, decoded path,
// so "..", "%2e%2e", "//" and encoded slashes all resolve to the server
// they really name before any check.
func ParseUserPath(u *url.URL) (up UserPath, ok bool) {
	decoded := u.Path
	cleaned := path.Clean(decoded)
	if strings.HasSuffix(decoded, "/") && cleaned != "/" {
		cleaned += "/"
	}
	rest, found := strings.CutPrefix(cleaned, "/user/")
	if !found {
		return up, false
	}
	name, rest, more := strings.Cut(rest, "/")
	if name == "" {
		return up, false
	}
	up.Name = name
	if !more {
		return up, true
	}
	up.Server, up.Tail, _ = strings.Cut(rest, "/")
	if up.Server == "" {
		up.Tail = ""
		return up, true
	}
	up.Canonical = cleaned == decoded &&
		up.Name == policies.NormalizeUser(up.Name) &&
		hasUserPrefix(u.EscapedPath(), up.Name, up.Server)
	return up, true
}

// hasUserPrefix is strings.HasPrefix(p, UserPrefix(user, server)) without
// building the prefix on every request.
func hasUserPrefix(p, user, server string) bool {
	for _, part := range [...]string{"/user/", url.PathEscape(user), "/", url.PathEscape(server), "/"} {
		if !strings.HasPrefix(p, part) {
			return false
		}
		p = p[len(part):]
	}
	return true
}

// UserPrefix is the URL prefix of a user's server, with a trailing slash.
func UserPrefix(user, server string) string {
	return "/user/" + url.PathEscape(user) + "/" + url.PathEscape(server) + "/"
}

// Decision is what Authorize decides for a request to /user/.
type Decision struct {
	// Allow says the request may be resolved and proxied.
	Allow bool
	// Status, Reason and Message explain a refusal (Status 0 with
	// Redirect set: a redirect).
	Status          int
	Reason, Message string
	// Redirect, if set, is where the request is sent instead.
	Redirect string
	// Server and Image are the server allowed. (What the policy grants
	// the user is computed only when a start needs it: not on the hot
	// path.)
	Server string
	Image  *policies.Image
	// Owner is whose server it is (the session's user, but for a guest or
	// an admin with an access grant: see AuthorizeHost), and Grant the
	// share or access grant that lets a visitor who is not the owner in.
	Owner string
	Grant *shares.Grant
}

func refused(status int, reason, msg string) Decision {
	return Decision{Status: status, Reason: reason, Message: msg}
}

// Authorize decides, from the policy, the session and the request alone
// (no I/O), whether a request to /user/ may reach a server: only the
// server's owner, for a server the policy allows them, under its canonical
// address, and never from another site.
func Authorize(pol *policies.Policy, s *session.Session, r *http.Request, origin func() string) Decision {
	up, ok := ParseUserPath(r.URL)
	if !ok {
		return refused(http.StatusNotFound, "bad_path", "There is no server at this address.")
	}
	if policies.NormalizeUser(up.Name) != s.User {
		return refused(http.StatusForbidden, "other_user", "This is another user's server.")
	}
	if !pol.Known(s.User, s.Groups) {
		return refused(http.StatusForbidden, "not_in_policy", "Your account is not in this hub's policy. Ask an admin to add you.")
	}
	if up.Server == "" {
		return Decision{Redirect: "/"}
	}
	img := pol.Images[up.Server]
	if img == nil {
		return refused(http.StatusNotFound, "unknown_server", fmt.Sprintf("There is no server called %q.", up.Server))
	}
	if !pol.Allowed(s.User, s.Groups, up.Server) {
		return refused(http.StatusForbidden, "image_not_allowed", fmt.Sprintf("Your teams do not allow the server %q.", up.Server))
	}
	if !up.Canonical {
		prefix := UserPrefix(s.User, up.Server)
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && !reqkind.IsUpgrade(r) {
			target := prefix + (&url.URL{Path: up.Tail}).EscapedPath()
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			return Decision{Redirect: target, Status: http.StatusMovedPermanently}
		}
		return refused(http.StatusBadRequest, "non_canonical_path", "Use the canonical address "+prefix)
	}
	if CrossOrigin(r, origin) {
		return refused(http.StatusForbidden, "cross_origin", "Refused: this request came from another site.")
	}
	return Decision{Allow: true, Server: up.Server, Image: img, Owner: s.User}
}

// CrossOrigin reports a browser request from another site that would
// change state or open a websocket. Apps behind hubgate trust the
// container secret the gateway adds to every request, so they skip their
// own origin and XSRF checks (Jupyter does); the gateway makes that check
// for them. Sibling subdomains count as other sites: SameSite cookies do
// not keep those out. Requests without Origin and Sec-Fetch-Site (API
// clients, curl) are not browsers' cross-site requests and pass. origin
// gives the hub's own ("https://hub.example.org"), asked only when the
// request names one.
func CrossOrigin(r *http.Request, origin func() string) bool {
	if reqkind.IsSafeMethod(r) && !reqkind.IsUpgrade(r) {
		return false
	}
	if sent := r.Header.Get("Origin"); sent != "" {
		if !strings.EqualFold(strings.TrimSuffix(sent, "/"), strings.TrimSuffix(origin(), "/")) {
			return true
		}
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return false
	}
	return true
}
