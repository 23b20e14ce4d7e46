// Package pages renders hubgate's server-side HTML (no JavaScript build
// step; pages that work in any browser and on a phone) and its JSON
// answers. Each page has its own data type embedding Frame, the header
// every page shows. Problem is the one way any part of the gateway
// answers an error: a page for browsers, JSON for everyone else.
//
// It knows nothing of sessions, policies or containers: callers fill the
// view types.
package pages

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/hubgate/hubgate/caddymodule/reqkind"
)

//go:embed templates/*.html
var templateFS embed.FS

// Renderer renders the pages. It is safe for concurrent use.
type Renderer struct {
	t *template.Template
}

// New parses the embedded templates.
func New() (*Renderer, error) {
	t, err := template.New("pages").Funcs(template.FuncMap{"inc": func(i int) int { return i + 1 }}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("parse page templates: %w", err)
	}
	return &Renderer{t: t}, nil
}

// Frame is what the header of every page shows: the signed-in user, with
// links home, to the admin page (for admins) and to log out.
type Frame struct {
	// Title is the page's title.
	Title string
	// User is the signed-in user; empty on pages before login.
	User string
	// CSRF is the session's CSRF token for the page's forms (on the login
	// page: the login form's token).
	CSRF string
	// Admin shows the admin link.
	Admin bool
	// Refresh, if positive, reloads the page after that many seconds.
	Refresh int
}

// LoginPage is the login page: a button per provider, the local form.
type LoginPage struct {
	Frame
	Next      string
	Problem   string
	Providers []LoginButton
	Local     bool
}

// LoginButton starts one provider's login.
type LoginButton struct {
	Name, Label, URL string
}

// HomePage lists the user's servers.
type HomePage struct {
	Frame
	Servers []ServerView
	// Sharing, with server_host, holds shares and admin access grants.
	Sharing *SharingView
	// Services are the team services the user may use (tokens.go).
	Services []ServiceLink
	// Tokens is the personal-token section (tokens.go).
	Tokens TokenSection
	// Storage is the home's size and quota (nil when not measured);
	// Backup the user's snapshots (nil without backups). See
	// views_backup.go.
	Storage *StorageView
	Backup  *HomeBackup
}

// ServerView is one row of the home page.
type ServerView struct {
	Key, Description, URL, State string
}

// ProgressPage is shown while a server starts.
type ProgressPage struct {
	Frame
	Server      string
	Description string
	Elapsed     string
	Position    int
	// Steps are the start's steps so far; the last is under way.
	Steps []string
	// Storage, when set, warns that the home is over its soft quota.
	Storage *StorageView
}

// ErrorPage explains a refusal or a failure.
type ErrorPage struct {
	Frame
	Message string
	// Retry, if set, is offered as a "Try again" link.
	Retry string
	// Step and Output, for a failed start: the step it failed in and the
	// last lines of the container's output (secrets removed).
	Step, Output string
}

// LogoutPage asks to confirm the logout.
type LogoutPage struct {
	Frame
}

// AdminPage is the admin page.
type AdminPage struct {
	Frame
	Servers []ServerInfo
	Users   []UserInfo
	Reload  Reload
	// Changes are the last reload's access changes, one line per user.
	Changes []string
	Policy  string
	Engine  string
	Queue   string
	// Access, with server_host, lists shares and admin access grants.
	Access *AdminAccessView
	// Backup is the backups and storage section (nil without backups).
	Backup *AdminBackup
}

// Reload is the last policy reload as the admin page shows it.
type Reload struct {
	OK   bool
	Err  error
	Time time.Time
}

// Login renders the login page.
func (p *Renderer) Login(w http.ResponseWriter, status int, d LoginPage) error {
	return p.render(w, status, "login", d)
}

// Home renders the home page.
func (p *Renderer) Home(w http.ResponseWriter, d HomePage) error {
	return p.render(w, http.StatusOK, "home", d)
}

// Progress renders the progress page of a start (202, refreshing).
func (p *Renderer) Progress(w http.ResponseWriter, d ProgressPage) error {
	w.Header().Set("Cache-Control", "no-store")
	if d.Refresh > 0 {
		w.Header().Set("Refresh", strconv.Itoa(d.Refresh))
	}
	return p.render(w, http.StatusAccepted, "progress", d)
}

// Logout renders the logout confirmation; formTargets are extra origins
// its form may lead to (an identity provider's end-session endpoint).
func (p *Renderer) Logout(w http.ResponseWriter, d LogoutPage, formTargets ...string) error {
	return p.render(w, http.StatusOK, "logout", d, formTargets...)
}

// Admin renders the admin page.
func (p *Renderer) Admin(w http.ResponseWriter, d AdminPage) error {
	return p.render(w, http.StatusOK, "admin", d)
}

// Problem answers an error: an error page (with the header of frame) for a
// browser navigation or a form post, JSON {"error": message} otherwise.
// extra adds fields to the JSON.
func (p *Renderer) Problem(w http.ResponseWriter, r *http.Request, status int, frame Frame, message, retry string, extra map[string]any) error {
	return p.ProblemPage(w, r, status, ErrorPage{Frame: frame, Message: message, Retry: retry}, extra)
}

// ProblemPage is Problem with every field of the error page.
func (p *Renderer) ProblemPage(w http.ResponseWriter, r *http.Request, status int, page ErrorPage, extra map[string]any) error {
	message := page.Message
	if reqkind.WantsHTML(r) || reqkind.IsFormPost(r) {
		if page.Title == "" {
			page.Title = http.StatusText(status)
		}
		return p.render(w, status, "error", page)
	}
	body := map[string]any{"error": message}
	for k, v := range extra {
		body[k] = v
	}
	return WriteJSON(w, status, body)
}

// render executes the named page into a buffer first, so a template error
// never leaves a half-written response. formTargets are extra origins the
// page's forms may submit to (the Content-Security-Policy's form-action,
// which browsers also apply to the redirects that follow a submission).
func (p *Renderer) render(w http.ResponseWriter, status int, name string, data any, formTargets ...string) error {
	var buf bytes.Buffer
	if err := p.t.ExecuteTemplate(&buf, name, data); err != nil {
		return fmt.Errorf("render %s page: %w", name, err)
	}
	formAction := "'self'"
	for _, t := range formTargets {
		formAction += " " + t
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(buf.Len()))
	if hdr.Get("Cache-Control") == "" {
		hdr.Set("Cache-Control", "no-store")
	}
	SecurityHeaders(hdr)
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// SecurityHeaders sets what every hub page and API answer carries: no
// framing, no referrer beyond the origin, and an opener/resource policy
// that keeps a user's server from holding a handle on hub pages.
func SecurityHeaders(hdr http.Header) {
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "same-origin")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	hdr.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// WriteJSON answers v as JSON, never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	SecurityHeaders(hdr)
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}
