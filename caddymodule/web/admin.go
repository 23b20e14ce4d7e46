package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
)

// serveAdmin shows the admin page (GET) and stops servers (POST).
func (s *Site) serveAdmin(w http.ResponseWriter, r *http.Request, sess *session.Session) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		if ok, err := s.checkForm(w, r, sess); !ok {
			return err
		}
		user, server := policies.NormalizeUser(r.PostFormValue("user")), r.PostFormValue("server")
		if err := s.stop(r, user, server, sess.User); err != nil && !errors.Is(err, spawner.ErrNotFound) {
			return s.refuse(w, r, sess, http.StatusBadGateway, "Stopping the server failed: "+err.Error(), "stop_failed", zap.Error(err))
		}
		http.Redirect(w, r, "/hub/admin", http.StatusSeeOther)
		return nil
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on the admin page", r.Method))
	}
	pol := s.o.Policy()
	res := s.o.PolicyStatus()
	page := pages.AdminPage{
		Frame:  s.o.Login.Frame(sess, "Admin"),
		Reload: pages.Reload{OK: res.OK, Err: res.Err, Time: res.Time},
		Policy: pol.Summary(), Engine: "reachable",
	}
	if s.o.LastDiff != nil {
		page.Changes = s.o.LastDiff()
	}
	servers, err := s.listServers(r.Context())
	if err != nil {
		page.Engine = "unreachable: " + err.Error()
	}
	page.Servers = servers
	page.Users = s.listUsers(pol, servers)
	st := s.o.Hub.Stats()
	page.Queue = fmt.Sprintf("%d starting, %d waiting", st.StartsRunning, st.StartsWaiting)
	if s.o.ServerHost != nil && s.o.Shares != nil {
		page.Access = s.adminAccessView(r)
	}
	page.Backup = s.adminBackup(r, pol)
	return s.o.Pages.Admin(w, page)
}

// listServers lists every server of this deployment (one engine call).
func (s *Site) listServers(ctx context.Context) ([]pages.ServerInfo, error) {
	listed, err := s.o.Hub.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]pages.ServerInfo, 0, len(listed))
	for _, l := range listed {
		si := pages.ServerInfo{
			User: l.User, Server: l.Server, Image: l.Image, Status: l.Status, Node: l.Node,
			Running: l.Running, Created: l.Created, LastActivity: l.LastActivity,
		}
		si.MemoryLimit, _ = strconv.ParseInt(l.Meta[hub.MetaMemory], 10, 64)
		si.CPULimit, _ = strconv.ParseFloat(l.Meta[hub.MetaCPUs], 64)
		out = append(out, si)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].User != out[j].User {
			return out[i].User < out[j].User
		}
		return out[i].Server < out[j].Server
	})
	return out, nil
}

// listUsers joins everyone the gateway knows of: the policy's admins,
// members and local accounts, users who logged in, users with servers.
func (s *Site) listUsers(pol *policies.Policy, servers []pages.ServerInfo) []pages.UserInfo {
	names := make(map[string]struct{})
	for _, a := range pol.Admins {
		names[a] = struct{}{}
	}
	for u := range pol.Accounts {
		names[u] = struct{}{}
	}
	for _, t := range pol.Teams {
		for _, m := range t.Members {
			names[m] = struct{}{}
		}
	}
	seen := s.o.Hub.Seen()
	for u := range seen {
		names[u] = struct{}{}
	}
	byUser := make(map[string][]string)
	for _, sv := range servers {
		names[sv.User] = struct{}{}
		if sv.Running {
			byUser[sv.User] = append(byUser[sv.User], sv.Server)
		}
	}
	out := make([]pages.UserInfo, 0, len(names))
	for n := range names {
		g := pol.Grant(n, nil)
		ui := pages.UserInfo{Name: n, Admin: g.Admin, InPolicy: pol.Known(n, nil), Teams: g.Teams, Images: g.Images, Servers: byUser[n], LastSeen: seen[n]}
		if ui.Servers == nil {
			ui.Servers = []string{}
		}
		out = append(out, ui)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
