package web

import (
	"net/http"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/login"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/reqkind"
	"github.com/hubgate/hubgate/caddymodule/session"
)

var denials = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "hubgate", Name: "denials_total", Help: "Requests refused, by reason.",
}, []string{"reason"})

// Collectors are the site's metrics, for the glue to register.
func Collectors() []prometheus.Collector { return []prometheus.Collector{denials} }

// Denied counts a refusal by reason (login's refusals count here too).
func Denied(reason string) { denials.WithLabelValues(reason).Inc() }

// needLogin sends browsers to the login page and tells others 401.
func (s *Site) needLogin(w http.ResponseWriter, r *http.Request) error {
	if reqkind.WantsHTML(r) {
		next := r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			next += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, "/hub/login?next="+url.QueryEscape(login.SafeNext(next)), http.StatusFound)
		return nil
	}
	w.Header().Set("WWW-Authenticate", `Cookie realm="hubgate"`)
	return pages.WriteJSON(w, http.StatusUnauthorized, map[string]any{"error": "login required", "login": "/hub/login"})
}

// refuse answers a denied request (a page or JSON), audits and counts it.
func (s *Site) refuse(w http.ResponseWriter, r *http.Request, sess *session.Session, status int, msg, reason string, fields ...zap.Field) error {
	s.denied(r, sess, status, reason, fields...)
	return s.o.Pages.Problem(w, r, status, s.o.Login.Frame(sess, ""), msg, "", nil)
}

// denied audits and counts a refused request.
func (s *Site) denied(r *http.Request, sess *session.Session, status int, reason string, fields ...zap.Field) {
	if sess != nil {
		fields = append(fields, zap.String("user", sess.User))
	}
	s.o.Audit.Warn("denied", append(fields, zap.String("reason", reason), zap.String("path", r.URL.Path), zap.Int("status", status))...)
	Denied(reason)
}
