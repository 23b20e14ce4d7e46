package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
)

// serverInfo is one server as the admin page and the API show it.
type serverInfo struct {
	User         string    `json:"user"`
	Server       string    `json:"server"`
	Image        string    `json:"image"`
	Status       string    `json:"status"`
	Running      bool      `json:"running"`
	Created      time.Time `json:"created"`
	LastActivity time.Time `json:"last_activity,omitzero"`
	MemoryLimit  int64     `json:"memory_limit_bytes"`
	CPULimit     float64   `json:"cpu_limit"`
}

// MemoryText renders the memory limit for people.
func (s serverInfo) MemoryText() string {
	if s.MemoryLimit <= 0 {
		return "unlimited"
	}
	const gi, mi = 1 << 30, 1 << 20
	if s.MemoryLimit%gi == 0 {
		return fmt.Sprintf("%d GiB", s.MemoryLimit/gi)
	}
	return fmt.Sprintf("%d MiB", s.MemoryLimit/mi)
}

// userInfo is one user as the admin page and the API show it.
type userInfo struct {
	Name     string    `json:"name"`
	Admin    bool      `json:"admin"`
	InPolicy bool      `json:"in_policy"`
	Teams    []string  `json:"teams"`
	Images   []string  `json:"images"`
	Servers  []string  `json:"servers"`
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// listServers asks the engine for every server of this deployment (one
// call; this is not the proxy's hot path).
func (h *Handler) listServers(ctx context.Context) ([]serverInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	insts, err := h.hub.spawner.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]serverInfo, 0, len(insts))
	for _, inst := range insts {
		si := serverInfo{
			User: inst.User, Server: inst.Server, Image: inst.Image, Status: inst.Status,
			Running: inst.Running, Created: inst.Created,
		}
		si.MemoryLimit, _ = strconv.ParseInt(inst.Meta[metaMemory], 10, 64)
		si.CPULimit, _ = strconv.ParseFloat(inst.Meta[metaCPUs], 64)
		if rt, ok := h.hub.routes.Peek(routeKey(inst.User, inst.Server)); ok && rt.inst.ID == inst.ID {
			si.LastActivity = time.Unix(0, rt.lastActivity.Load()).UTC()
		}
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
func (h *Handler) listUsers(pol *policies.Policy, servers []serverInfo) []userInfo {
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
	for _, u := range h.hub.seen.Keys() {
		names[u] = struct{}{}
	}
	byUser := make(map[string][]string)
	for _, s := range servers {
		names[s.User] = struct{}{}
		if s.Running {
			byUser[s.User] = append(byUser[s.User], s.Server)
		}
	}
	out := make([]userInfo, 0, len(names))
	for n := range names {
		g := pol.Grant(n, nil)
		ui := userInfo{Name: n, Admin: g.Admin, InPolicy: pol.Known(n, nil), Teams: g.Teams, Images: g.Images, Servers: byUser[n]}
		if t, ok := h.hub.seen.Peek(n); ok {
			ui.LastSeen = t
		}
		if ui.Servers == nil {
			ui.Servers = []string{}
		}
		out = append(out, ui)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// adminData is what the admin page shows.
type adminData struct {
	Servers []serverInfo
	Users   []userInfo
	Reload  policies.ReloadResult
	Policy  string
	Engine  string
	Queue   string
}

// serveAdmin shows the admin page (GET) and stops servers (POST).
func (h *Handler) serveAdmin(w http.ResponseWriter, r *http.Request) error {
	s := h.currentSession(r)
	if s == nil {
		return h.needLogin(w, r)
	}
	setUserPlaceholders(r, s)
	pol := h.watcher.Current()
	if !pol.IsAdmin(s.User) {
		return h.refuse(w, r, http.StatusForbidden, "The admin page is for admins only.", "not_admin", zap.String("user", s.User))
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		if ok, err := h.checkForm(w, r, s); !ok {
			return err
		}
		user, server := policies.NormalizeUser(r.PostFormValue("user")), r.PostFormValue("server")
		if err := h.stopServer(r.Context(), user, server, s.User); err != nil && !errors.Is(err, spawner.ErrNotFound) {
			return h.refuse(w, r, http.StatusBadGateway, "Stopping the server failed: "+err.Error(), "stop_failed", zap.Error(err))
		}
		http.Redirect(w, r, "/hub/admin", http.StatusSeeOther)
		return nil
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on the admin page", r.Method))
	}
	data := adminData{Reload: h.watcher.LastResult(), Policy: pol.Summary(), Engine: "reachable"}
	servers, err := h.listServers(r.Context())
	if err != nil {
		data.Engine = "unreachable: " + err.Error()
	}
	data.Servers = servers
	data.Users = h.listUsers(pol, servers)
	running, waiting := h.hub.queue.stats()
	data.Queue = fmt.Sprintf("%d starting, %d waiting", running, waiting)
	return h.pages.render(w, http.StatusOK, "admin", pageData{Title: "Admin", User: s.User, CSRF: h.csrfToken(s), Admin: true, AdminData: &data})
}

// checkForm checks a state-changing form post: same-site, the session's
// CSRF token, a bounded body. When it reports false, the refusal has been
// written (or err says why it could not be).
func (h *Handler) checkForm(w http.ResponseWriter, r *http.Request, s *session.Session) (bool, error) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return false, caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("parse form: %w", err))
	}
	if crossSite(r) || !h.checkCSRF(r, h.csrfToken(s)) {
		return false, h.refuse(w, r, http.StatusForbidden, "Refused: the form's CSRF token is missing or wrong, or the request came from another site.", "csrf", zap.String("user", s.User))
	}
	return true, nil
}

// serveStop lets a user stop one of their own servers from the home page.
func (h *Handler) serveStop(w http.ResponseWriter, r *http.Request) error {
	s := h.currentSession(r)
	if s == nil {
		return h.needLogin(w, r)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("stop takes POST"))
	}
	if ok, err := h.checkForm(w, r, s); !ok {
		return err
	}
	if err := h.stopServer(r.Context(), s.User, r.PostFormValue("server"), s.User); err != nil && !errors.Is(err, spawner.ErrNotFound) {
		return h.refuse(w, r, http.StatusBadGateway, "Stopping the server failed: "+err.Error(), "stop_failed", zap.Error(err))
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// stopServer stops and removes a server's container; the volume stays.
func (h *Handler) stopServer(ctx context.Context, user, server, by string) error {
	if user == "" || server == "" || strings.ContainsAny(server, "/\x00") {
		return fmt.Errorf("stop: %w", spawner.ErrNotFound)
	}
	// A stop, once asked for, finishes even if the client goes away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := h.hub.spawner.Stop(ctx, user, server)
	if rt, ok := h.hub.routes.Peek(routeKey(user, server)); ok {
		h.hub.forget(rt)
	}
	if err != nil {
		return fmt.Errorf("stop %s/%s: %w", user, server, err)
	}
	h.audit.Info("stop", zap.String("user", user), zap.String("server", server), zap.String("by", by))
	return nil
}
