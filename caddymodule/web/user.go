package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/reqkind"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
)

// serveUser is the request path of a user's server: the session was
// authenticated by the route table; here it is authorized, resolved to a
// route (or a start in flight), and proxied.
func (s *Site) serveUser(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
	if s.o.ServerHost != nil {
		return s.redirectToServerHost(w, r, sess)
	}
	d := Authorize(s.o.Policy(), sess, r, func() string { return s.o.Login.Origin(r) })
	if !d.Allow {
		if d.Redirect != "" {
			status := d.Status
			if status == 0 {
				status = http.StatusFound
			}
			http.Redirect(w, r, d.Redirect, status)
			return nil
		}
		return s.refuse(w, r, sess, d.Status, d.Message, d.Reason, zap.String("server", d.Server), zap.String("origin", r.Header.Get("Origin")))
	}
	if !tokenReaches(r, d.Server) {
		return s.refuse(w, r, sess, http.StatusForbidden, "This token reaches only the server "+requestToken(r).Server+".", "token_scope", zap.String("server", d.Server))
	}
	rt, cached, done, err := s.resolve(w, r, sess, d)
	if done {
		return err
	}
	err = s.o.Proxy.Serve(w, r, rt, s.visitor(r, sess, d.Server), UserPrefix(sess.User, d.Server))
	if err != nil && cached && hub.Retryable(r, err) {
		// The cached server is gone (it died or was removed): start it
		// again for this very request, with the same volume.
		rt, _, done, err := s.resolve(w, r, sess, d)
		if done {
			return err
		}
		return s.o.Proxy.Serve(w, r, rt, s.visitor(r, sess, d.Server), UserPrefix(sess.User, d.Server))
	}
	return err
}

// visitor is who the proxied request is for, with the signed assertion.
func (s *Site) visitor(r *http.Request, sess *session.Session, server string) hub.Visitor {
	v := hub.Visitor{SessionID: sess.ID, User: sess.User, Groups: sess.Groups, Expires: time.Unix(sess.Expires, 0)}
	if s.o.SignAssertions && s.o.Signer != nil {
		tok, err := s.o.Signer.Sign(s.o.Login.Origin(r), sess, server)
		if err != nil {
			s.o.Logger.Error("signing the identity assertion failed", zap.String("user", sess.User), zap.Error(err))
		}
		v.Assertion = tok
	}
	return v
}

// resolve finds the route of the allowed server, or begins (or joins) its
// start and waits up to StartWait. When done is true the response was
// written (the progress page, a 503, a failure page) and err is its error.
//
// The server is its owner's: a guest's or an admin's visit (d.Owner is
// not the visitor) starts it with the owner's grant (their teams' images,
// limits, repos and quota), never the visitor's, and no identity of the
// visitor reaches the container.
func (s *Site) resolve(w http.ResponseWriter, r *http.Request, sess *session.Session, d Decision) (rt *hub.Route, cached, done bool, err error) {
	owner := sess
	if d.Owner != "" && d.Owner != sess.User {
		var groups []string
		if d.Grant != nil {
			groups = d.Grant.OwnerGroups
		}
		owner = &session.Session{ID: "guest-start", User: d.Owner, Groups: groups, Provider: "grant"}
	}
	key := hub.Key(owner.User, d.Server)
	if rt, ok := s.o.Hub.Lookup(key); ok {
		return rt, true, false, nil
	}
	// Just after a gateway start the listing of running servers may still
	// be on its way; it is cheaper to wait for it than to start a server
	// that is running.
	if s.o.Hub.AwaitWarm(r.Context(), 2*time.Second) {
		if rt, ok := s.o.Hub.Lookup(key); ok {
			return rt, true, false, nil
		}
	}
	grant := s.o.Policy().Grant(owner.User, owner.Groups)
	if done, err := s.overQuota(w, r, sess, owner.User, d, grant); done {
		return nil, false, true, err
	}
	req := s.startRequest(owner, d, grant)
	if owner != sess {
		req.By, req.IdentityEnv = sess.User, nil
	}
	rt, st, err := s.o.Hub.StartAndWait(r.Context(), req, s.o.StartWait)
	switch {
	case r.Context().Err() != nil:
		return nil, false, true, nil
	case err != nil:
		return nil, false, true, s.startFailed(w, r, sess, d, err)
	case st != nil:
		return nil, false, true, s.starting(w, r, sess, d, st)
	}
	return rt, false, false, nil
}

// startRequest is the start of the allowed server for the session's user.
func (s *Site) startRequest(sess *session.Session, d Decision, grant policies.Grant) hub.StartRequest {
	lg := s.o.Login
	return hub.StartRequest{
		User: sess.User, Server: d.Server, Image: d.Image, Grant: grant, Groups: sess.Groups,
		Prefix: UserPrefix(sess.User, d.Server), By: sess.User,
		IdentityEnv: func(ctx context.Context) map[string]string { return lg.ContainerEnv(ctx, sess, grant) },
	}
}

// starting answers a request whose server is still starting: a progress
// page that refreshes for browsers, 503 + Retry-After for others.
func (s *Site) starting(w http.ResponseWriter, r *http.Request, sess *session.Session, d Decision, st *hub.Start) error {
	elapsed := st.Elapsed().Round(time.Second)
	if reqkind.WantsHTML(r) {
		f := s.o.Login.Frame(sess, "Starting "+d.Server)
		f.Refresh = 1
		return s.o.Pages.Progress(w, pages.ProgressPage{
			Frame: f, Server: d.Server, Description: d.Image.Description, Elapsed: elapsed.String(), Position: s.o.Hub.Position(st),
			Steps: st.Steps(), Storage: s.progressStorage(sess),
		})
	}
	w.Header().Set("Retry-After", "2")
	return pages.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{
		"status": "starting", "server": d.Server, "retry_after": 2, "elapsed_seconds": int(elapsed.Seconds()),
		"queue_position": s.o.Hub.Position(st), "steps": st.Steps(),
	})
}

// startFailed tells the user why their server did not start.
func (s *Site) startFailed(w http.ResponseWriter, r *http.Request, sess *session.Session, d Decision, err error) error {
	msg := "Your server could not start. The admins can see why in the gateway's log."
	status := http.StatusBadGateway
	switch {
	case errors.Is(err, spawner.ErrUnavailable):
		msg = "The container engine cannot be reached right now. Try again in a minute."
		status = http.StatusServiceUnavailable
	case errors.Is(err, hub.ErrStorageDown):
		msg = "The gateway cannot reach its shared storage right now, so no new server is started. Servers already running are not affected. Try again in a minute."
		status = http.StatusServiceUnavailable
	case errors.Is(err, spawner.ErrImageMissing):
		msg = fmt.Sprintf("The image %q of server %q is not available on this machine. Ask an admin to build or load it.", d.Image.Image, d.Server)
		status = http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("Your server %q did not become ready within %s and was stopped. Try again, or ask an admin.", d.Server, s.o.Hub.StartTimeout())
		status = http.StatusGatewayTimeout
	case errors.Is(err, hub.ErrContainerExited), errors.Is(err, hub.ErrContainerGone):
		msg = fmt.Sprintf("Your server %q stopped while starting. Try again, or ask an admin to look at its log.", d.Server)
	}
	if status == http.StatusServiceUnavailable && !reqkind.WantsHTML(r) {
		w.Header().Set("Retry-After", "10")
	}
	owner := sess.User
	if d.Owner != "" {
		owner = d.Owner
	}
	page := pages.ErrorPage{Frame: s.o.Login.Frame(sess, "Server did not start"), Message: msg, Retry: UserPrefix(owner, d.Server)}
	extra := map[string]any{"status": "failed", "server": d.Server}
	var se *hub.StartError
	if errors.As(err, &se) {
		page.Step, page.Output = se.Step, se.Output
		extra["step"], extra["output"] = se.Step, se.Output
	}
	return s.o.Pages.ProblemPage(w, r, status, page, extra)
}
