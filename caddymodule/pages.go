package caddymodule

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
)

//go:embed templates/*.html
var templateFS embed.FS

// pages renders hubgate's server-side HTML: no JavaScript build step, and
// pages that work in any browser and on a phone.
type pages struct {
	t *template.Template
}

// pageData is what every template may use.
type pageData struct {
	Title       string
	User        string
	CSRF        string
	Admin       bool
	Next        string
	Problem     string
	Message     string
	Retry       string
	Server      string
	Description string
	Elapsed     string
	Refresh     int
	Position    int
	Servers     []serverView
	AdminData   *adminData
}

func loadPages() (*pages, error) {
	t, err := template.ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("parse page templates: %w", err)
	}
	return &pages{t: t}, nil
}

// render executes the named page into a buffer first, so a template error
// never leaves a half-written response. data is a pageData or a struct
// embedding one. formTargets are extra origins the page's forms may submit
// to (the Content-Security-Policy's form-action, which browsers also apply
// to the redirects that follow a submission).
func (p *pages) render(w http.ResponseWriter, status int, name string, data any, formTargets ...string) error {
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
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	hdr.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}
