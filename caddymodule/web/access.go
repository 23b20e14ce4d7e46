package web

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/hubgate/hubgate/caddymodule/reqkind"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/caddymodule/shares"
	"github.com/hubgate/hubgate/policies"
)

// Grants is what AuthorizeHost knows of shares and access grants.
type Grants struct {
	// All are the grants in force or not (expiry is checked at Now).
	All []shares.Grant
	// Shares says whether shares are on; admin access grants count
	// either way.
	Shares bool
	Now    time.Time
}

// Access decides whether the session's user may open owner's server at
// all (the path aside): the owner, for a server the policy allows them; a
// guest, by a share in force, of an owner the policy still allows the
// server; an admin, by an access grant in force. No one else: being an
// admin alone opens nothing.
func Access(pol *policies.Policy, s *session.Session, owner, server string, g Grants) Decision {
	if !pol.Known(s.User, s.Groups) {
		return refused(http.StatusForbidden, "not_in_policy", "Your account is not in this hub's policy. Ask an admin to add you.")
	}
	img := pol.Images[server]
	if img == nil {
		return refused(http.StatusNotFound, "unknown_server", fmt.Sprintf("There is no server called %q.", server))
	}
	if s.User == owner {
		if !pol.Allowed(owner, s.Groups, server) {
			return refused(http.StatusForbidden, "image_not_allowed", fmt.Sprintf("Your teams do not allow the server %q.", server))
		}
		return Decision{Allow: true, Server: server, Image: img, Owner: owner}
	}
	grants := g.All
	if !g.Shares {
		grants = slices.DeleteFunc(slices.Clone(grants), func(x shares.Grant) bool { return x.Kind == shares.KindShare })
	}
	inTeam := func(team string) bool { return inPolicyTeam(pol, team, s.User, s.Groups) }
	gr := shares.Allows(grants, owner, server, s.User, pol.IsAdmin(s.User), inTeam, g.Now)
	if gr == nil {
		msg := fmt.Sprintf("This server belongs to %s and is not shared with you.", owner)
		if pol.IsAdmin(s.User) {
			msg += " Admins open users' servers only through an access grant (with a reason, for a limited time) on the admin page; the user sees it."
		}
		return refused(http.StatusForbidden, "other_user", msg)
	}
	if !pol.Allowed(owner, gr.OwnerGroups, server) {
		return refused(http.StatusForbidden, "owner_not_allowed", fmt.Sprintf("The policy no longer allows %s the server %q.", owner, server))
	}
	return Decision{Allow: true, Server: server, Image: img, Owner: owner, Grant: gr}
}

// inPolicyTeam reports whether user (with groups) is in the policy's team.
func inPolicyTeam(pol *policies.Policy, team, user string, groups []string) bool {
	t := pol.Teams[team]
	if t == nil {
		return false
	}
	if slices.Contains(t.Members, user) {
		return true
	}
	for _, g := range groups {
		if slices.Contains(t.Groups, policies.NormalizeGroup(g)) {
			return true
		}
	}
	return false
}

// AuthorizeHost decides, from the policy, the session, the grants and
// the request alone (no I/O), whether a request on owner's server host
// (server_host) may reach the server: Access, then the path must be the
// server's own canonical prefix (the host names one server; a
// non-canonical spelling is redirected or refused, never proxied), then
// the origin rules of a server's own origin: no cross-origin state
// change or websocket (CrossOrigin, against this host's origin), no
// script of another origin reading it (a fetch or XHR marked by the
// browser as not same-origin), and no framing by another origin.
func AuthorizeHost(pol *policies.Policy, s *session.Session, r *http.Request, owner, server string, g Grants, origin func() string) Decision {
	prefix := UserPrefix(owner, server)
	up, ok := ParseUserPath(r.URL)
	if !ok || up.Server == "" || policies.NormalizeUser(up.Name) != owner || up.Server != server {
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && !reqkind.IsUpgrade(r) && (r.URL.Path == "/" || r.URL.Path == "") {
			return Decision{Redirect: prefix}
		}
		return refused(http.StatusNotFound, "bad_path", "This host serves only "+prefix)
	}
	d := Access(pol, s, owner, server, g)
	if !d.Allow {
		return d
	}
	if !up.Canonical {
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
	if crossOriginRead(r) {
		return refused(http.StatusForbidden, "cross_origin_read", "Refused: a page of another origin may not read this server.")
	}
	return d
}

// crossOriginRead reports a browser request of another origin that is
// not a top-level navigation: a script's fetch or XHR (which, being
// same-site, carries this host's cookie), or a frame, an embed or an
// object of another origin. Links and redirects from the hub (top-level
// navigations) pass; so do clients that are not browsers.
func crossOriginRead(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return false
	}
	if r.Header.Get("Sec-Fetch-Mode") != "navigate" {
		return true
	}
	switch r.Header.Get("Sec-Fetch-Dest") {
	case "", "document":
		return false
	}
	return true
}
