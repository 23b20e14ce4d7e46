package web

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/reqkind"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
)

// ServicePrefix is the URL prefix of a team service, with a trailing slash.
func ServicePrefix(name string) string { return "/services/" + url.PathEscape(name) + "/" }

// AuthorizeService decides, from the policy, the session and the request
// alone, whether a request to /services/ may reach a team service: a
// service the policy names, for a member of one of its teams, under its
// canonical address, never from another site. A token request reaches a
// service only with a token for all of its owner's servers.
func AuthorizeService(pol *policies.Policy, s *session.Session, r *http.Request, origin func() string) (Decision, *policies.Service) {
	decoded := r.URL.Path
	cleaned := path.Clean(decoded)
	if strings.HasSuffix(decoded, "/") && cleaned != "/" {
		cleaned += "/"
	}
	rest, _ := strings.CutPrefix(cleaned, "/services/")
	name, _, _ := strings.Cut(rest, "/")
	if name == "" {
		return refused(http.StatusNotFound, "bad_path", "There is no service at this address."), nil
	}
	svc := pol.Services[name]
	if svc == nil {
		return refused(http.StatusNotFound, "unknown_service", fmt.Sprintf("There is no service called %q.", name)), nil
	}
	if !pol.ServiceAllowed(s.User, s.Groups, name) {
		return refused(http.StatusForbidden, "service_not_allowed", fmt.Sprintf("Your teams do not allow the service %q.", name)), nil
	}
	prefix := ServicePrefix(name)
	if cleaned != decoded || !strings.HasPrefix(r.URL.EscapedPath(), prefix) {
		// Another spelling ("/services/x", "..", "//", "%2F"): GETs are
		// sent to the canonical address, anything else is refused.
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && !reqkind.IsUpgrade(r) {
			tail := strings.TrimPrefix(strings.TrimPrefix(cleaned, "/services/"+name), "/")
			target := prefix + (&url.URL{Path: tail}).EscapedPath()
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			return Decision{Redirect: target, Status: http.StatusMovedPermanently}, nil
		}
		return refused(http.StatusBadRequest, "non_canonical_path", "Use the canonical address "+prefix), nil
	}
	if CrossOrigin(r, origin) {
		return refused(http.StatusForbidden, "cross_origin", "Refused: this request came from another site."), nil
	}
	return Decision{Allow: true, Server: policies.ServiceTarget + name}, svc
}

// serveService is the request path of a team service: authorized on every
// request against the policy in force, then proxied with the same header
// hygiene and assertion as a user's server.
func (s *Site) serveService(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
	if s.o.Services == nil {
		return s.o.Pages.Problem(w, r, http.StatusNotFound, s.o.Login.Frame(sess, "Not found"), "There is nothing at this address.", "", nil)
	}
	d, svc := AuthorizeService(s.o.Policy(), sess, r, func() string { return s.o.Login.Origin(r) })
	if !d.Allow {
		if d.Redirect != "" {
			http.Redirect(w, r, d.Redirect, d.Status)
			return nil
		}
		return s.refuse(w, r, sess, d.Status, d.Message, d.Reason, zap.String("origin", r.Header.Get("Origin")))
	}
	if rec := requestToken(r); rec != nil && rec.Server != "" {
		return s.refuse(w, r, sess, http.StatusForbidden, "This token reaches only the server "+rec.Server+".", "token_scope", zap.String("service", svc.Name))
	}
	route := hub.ServiceRoute{Name: svc.Name, Scheme: svc.Scheme, Dial: svc.Dial, StripPrefix: svc.StripPrefix}
	return s.o.Services.Serve(w, r, route, s.visitor(r, sess, d.Server))
}
