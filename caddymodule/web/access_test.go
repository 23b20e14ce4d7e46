package web

import (
	"net/http"
	"testing"
	"time"

	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/caddymodule/shares"
	"github.com/hubgate/hubgate/policies"
)

const accessPolicy = `admins: [root]
images:
  notebook: {image: x, port: 1}
  rstudio: {image: y, port: 1}
teams:
  research:
    members: [alice, bob, root]
    images: [notebook]
  stats:
    members: [carol]
    groups: ["oidc:stats"]
    images: [rstudio]
  viewers:
    members: [dave]
    images: []
`

// TestAuthorizeHostTable: who reaches a server on its own host, for each
// combination of owner, share, admin access grant, expiry and the origin
// rules of a server's own origin. Pure: no runtime, no storage.
func TestAuthorizeHostTable(t *testing.T) {
	pol, err := policies.Parse("p.yaml", []byte(accessPolicy))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	share := func(id string, users, teams []string, expires time.Time) shares.Grant {
		return shares.Grant{ID: id, Kind: shares.KindShare, Owner: "alice", Server: "notebook", Users: users, Teams: teams, By: "alice", Expires: expires}
	}
	adminGrant := func(id, server string, expires time.Time) shares.Grant {
		return shares.Grant{ID: id, Kind: shares.KindAdmin, Owner: "alice", Server: server, Users: []string{"root"}, By: "root", Reason: "ticket", Expires: expires}
	}
	const origin = "https://notebook--alice.hub.test"
	sess := func(user string, groups ...string) *session.Session {
		return &session.Session{ID: "s", User: user, Groups: groups}
	}
	cases := []struct {
		name    string
		sess    *session.Session
		grants  []shares.Grant
		sharing bool
		method  string
		path    string
		hdr     []string
		reason  string // "" allows
		grant   string // the grant the decision goes by
		redir   string
	}{
		{name: "owner", sess: sess("alice"), path: "/user/alice/notebook/"},
		{name: "owner, root of host redirected", sess: sess("alice"), path: "/", redir: "/user/alice/notebook/"},
		{name: "owner, another server's path on this host", sess: sess("alice"), path: "/user/alice/rstudio/", reason: "bad_path"},
		{name: "owner, another user's path on this host", sess: sess("alice"), path: "/user/bob/notebook/", reason: "bad_path"},
		{name: "stranger", sess: sess("bob"), path: "/user/alice/notebook/", reason: "other_user"},
		{name: "not in policy", sess: sess("eve"), grants: []shares.Grant{share("g1", []string{"eve"}, nil, time.Time{})}, sharing: true, path: "/user/alice/notebook/", reason: "not_in_policy"},
		{name: "shared by name", sess: sess("bob"), grants: []shares.Grant{share("g1", []string{"bob"}, nil, time.Time{})}, sharing: true, path: "/user/alice/notebook/x", grant: "g1"},
		{name: "share, sharing off", sess: sess("bob"), grants: []shares.Grant{share("g1", []string{"bob"}, nil, time.Time{})}, sharing: false, path: "/user/alice/notebook/x", reason: "other_user"},
		{name: "share expired", sess: sess("bob"), grants: []shares.Grant{share("g1", []string{"bob"}, nil, now.Add(-time.Second))}, sharing: true, path: "/user/alice/notebook/", reason: "other_user"},
		{name: "share in force until later", sess: sess("bob"), grants: []shares.Grant{share("g1", []string{"bob"}, nil, now.Add(time.Minute))}, sharing: true, path: "/user/alice/notebook/", grant: "g1"},
		{name: "shared with someone else", sess: sess("bob"), grants: []shares.Grant{share("g1", []string{"carol"}, nil, time.Time{})}, sharing: true, path: "/user/alice/notebook/", reason: "other_user"},
		{name: "shared with a team by member", sess: sess("carol"), grants: []shares.Grant{share("g2", nil, []string{"stats"}, time.Time{})}, sharing: true, path: "/user/alice/notebook/", grant: "g2"},
		{name: "shared with a team by group", sess: sess("frank", "oidc:stats"), grants: []shares.Grant{share("g2", nil, []string{"stats"}, time.Time{})}, sharing: true, path: "/user/alice/notebook/", grant: "g2"},
		{name: "guest without the image himself", sess: sess("dave"), grants: []shares.Grant{share("g3", []string{"dave"}, nil, time.Time{})}, sharing: true, path: "/user/alice/notebook/", grant: "g3"},
		{name: "share of another server", sess: sess("bob"), grants: []shares.Grant{{ID: "g4", Kind: shares.KindShare, Owner: "alice", Server: "rstudio", Users: []string{"bob"}}}, sharing: true, path: "/user/alice/notebook/", reason: "other_user"},
		{name: "admin without a grant", sess: sess("root"), path: "/user/alice/notebook/", reason: "other_user"},
		{name: "admin with a grant", sess: sess("root"), grants: []shares.Grant{adminGrant("a1", "notebook", now.Add(time.Hour))}, path: "/user/alice/notebook/", grant: "a1"},
		{name: "admin with a grant for all servers", sess: sess("root"), grants: []shares.Grant{adminGrant("a2", "*", now.Add(time.Hour))}, path: "/user/alice/notebook/", grant: "a2"},
		{name: "admin grant expired", sess: sess("root"), grants: []shares.Grant{adminGrant("a1", "notebook", now.Add(-time.Second))}, path: "/user/alice/notebook/", reason: "other_user"},
		{name: "admin grant held by a user no longer admin", sess: sess("bob"), grants: []shares.Grant{{ID: "a3", Kind: shares.KindAdmin, Owner: "alice", Server: "notebook", Users: []string{"bob"}, Expires: now.Add(time.Hour)}}, path: "/user/alice/notebook/", reason: "other_user"},
		{name: "admin grant is not a share: a share of * means nothing", sess: sess("bob"), grants: []shares.Grant{{ID: "g5", Kind: shares.KindShare, Owner: "alice", Server: "*", Users: []string{"bob"}}}, sharing: true, path: "/user/alice/notebook/", reason: "other_user"},
		{name: "owner lost the image", sess: sess("bob"), grants: []shares.Grant{{ID: "g6", Kind: shares.KindShare, Owner: "carol", Server: "notebook", Users: []string{"bob"}}}, sharing: true, path: "/user/carol/notebook/", reason: "owner_not_allowed"},
		{name: "non-canonical spelling redirected", sess: sess("bob"), grants: []shares.Grant{share("g1", []string{"bob"}, nil, time.Time{})}, sharing: true, path: "/user/alice/notebook//x", redir: "/user/alice/notebook/x"},
		{name: "non-canonical POST refused", sess: sess("bob"), grants: []shares.Grant{share("g1", []string{"bob"}, nil, time.Time{})}, sharing: true, method: "POST", path: "/user/alice/x/../notebook/x", reason: "non_canonical_path"},
		{name: "POST from another server's origin", sess: sess("bob"), grants: []shares.Grant{share("g1", []string{"bob"}, nil, time.Time{})}, sharing: true, method: "POST", path: "/user/alice/notebook/api", hdr: []string{"Origin", "https://notebook--bob.hub.test", "Sec-Fetch-Site", "same-site"}, reason: "cross_origin"},
		{name: "POST from the hub's origin", sess: sess("alice"), method: "POST", path: "/user/alice/notebook/api", hdr: []string{"Origin", "https://hub.test", "Sec-Fetch-Site", "same-site"}, reason: "cross_origin"},
		{name: "POST from its own origin", sess: sess("alice"), method: "POST", path: "/user/alice/notebook/api", hdr: []string{"Origin", origin, "Sec-Fetch-Site", "same-origin"}},
		{name: "websocket from another origin", sess: sess("alice"), path: "/user/alice/notebook/ws", hdr: []string{"Connection", "Upgrade", "Upgrade", "websocket", "Origin", "https://notebook--bob.hub.test"}, reason: "cross_origin"},
		{name: "fetch from another server's origin", sess: sess("alice"), path: "/user/alice/notebook/api/contents", hdr: []string{"Sec-Fetch-Site", "same-site", "Sec-Fetch-Mode", "cors", "Origin", "https://notebook--bob.hub.test"}, reason: "cross_origin_read"},
		{name: "image of another origin", sess: sess("alice"), path: "/user/alice/notebook/files/x.png", hdr: []string{"Sec-Fetch-Site", "same-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image"}, reason: "cross_origin_read"},
		{name: "framed by another origin", sess: sess("alice"), path: "/user/alice/notebook/", hdr: []string{"Sec-Fetch-Site", "same-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "iframe"}, reason: "cross_origin_read"},
		{name: "link from the hub", sess: sess("alice"), path: "/user/alice/notebook/", hdr: []string{"Sec-Fetch-Site", "same-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}},
		{name: "its own page's fetch", sess: sess("alice"), path: "/user/alice/notebook/api/contents", hdr: []string{"Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "cors"}},
	}
	for _, c := range cases {
		method := c.method
		if method == "" {
			method = "GET"
		}
		r := request(method, c.path, "", c.hdr...)
		owner, server := "alice", "notebook"
		if c.name == "owner lost the image" {
			owner = "carol"
		}
		d := AuthorizeHost(pol, c.sess, r, owner, server, Grants{All: c.grants, Shares: c.sharing, Now: now}, func() string { return origin })
		switch {
		case c.redir != "":
			if d.Allow || d.Redirect != c.redir {
				t.Errorf("%s: want redirect to %s, got %+v", c.name, c.redir, d)
			}
		case c.reason != "":
			if d.Allow || d.Reason != c.reason {
				t.Errorf("%s: want refusal %q, got %+v", c.name, c.reason, d)
			}
			if d.Status == 0 || d.Status == http.StatusOK {
				t.Errorf("%s: refusal without an error status: %+v", c.name, d)
			}
		default:
			if !d.Allow {
				t.Errorf("%s: refused: %+v", c.name, d)
				continue
			}
			if d.Owner != owner {
				t.Errorf("%s: owner %q", c.name, d.Owner)
			}
			got := ""
			if d.Grant != nil {
				got = d.Grant.ID
			}
			if got != c.grant {
				t.Errorf("%s: goes by grant %q, want %q", c.name, got, c.grant)
			}
		}
	}
}

// TestNewShareAndAdminAccessRules: what the forms and the API accept.
func TestNewShareAndAdminAccessRules(t *testing.T) {
	pol, err := policies.Parse("p.yaml", []byte(accessPolicy))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	alice := &session.Session{User: "alice"}
	for _, c := range []struct {
		req ShareRequest
		ok  bool
	}{
		{ShareRequest{Server: "notebook", Users: []string{"bob"}}, true},
		{ShareRequest{Server: "notebook", Teams: []string{"stats"}, ExpiresIn: "7d"}, true},
		{ShareRequest{Server: "notebook", Users: []string{"Bob"}, ExpiresIn: "8h"}, true},
		{ShareRequest{Server: "rstudio", Users: []string{"bob"}}, false},    // not hers
		{ShareRequest{Server: "notebook"}, false},                           // nobody
		{ShareRequest{Server: "notebook", Users: []string{"alice"}}, false}, // herself
		{ShareRequest{Server: "notebook", Teams: []string{"nope"}}, false},
		{ShareRequest{Server: "notebook", Users: []string{"аlice"}}, false}, // Cyrillic а
		{ShareRequest{Server: "notebook", Users: []string{"bob"}, ExpiresIn: "-1h"}, false},
		{ShareRequest{Server: "notebook", Users: []string{"bob"}, ExpiresIn: "400d"}, false},
	} {
		g, err := NewShare(pol, alice, c.req, now)
		if (err == nil) != c.ok {
			t.Errorf("%+v: err %v", c.req, err)
		}
		if err == nil && (g.Owner != "alice" || g.Kind != shares.KindShare) {
			t.Errorf("%+v: grant %+v", c.req, g)
		}
	}
	if g, err := NewAdminAccess(pol, "root", "alice", "notebook", "ticket 1", "", now); err != nil || g.Expires.Sub(now) != DefaultAdminAccess {
		t.Errorf("default admin access: %+v %v", g, err)
	}
	for _, c := range [][4]string{
		{"bob", "alice", "notebook", "not an admin"},
		{"root", "alice", "notebook", ""},
		{"root", "alice", "nope", "reason"},
		{"root", "root", "notebook", "own"},
	} {
		if _, err := NewAdminAccess(pol, c[0], c[1], c[2], c[3], "", now); err == nil {
			t.Errorf("admin access %v accepted", c)
		}
	}
	if _, err := NewAdminAccess(pol, "root", "alice", "*", "reason", "9h", now); err == nil {
		t.Error("a 9h admin access accepted")
	}
}
