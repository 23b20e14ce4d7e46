// Package serverhost maps a user's server to a host name of its own and
// back: the server_host template, such as "{server}--{user}.hub.example.org",
// filled with the user and server names escaped as spawner.EscapeDNS does
// (only [a-z0-9], never '-'), so the mapping is injective and every host
// reads back as at most one server. It knows nothing of HTTP or policies.
package serverhost

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/hubgate/hubgate/spawner"
)

// Placeholders of the template.
const (
	User   = "{user}"
	Server = "{server}"
)

// maxLabel is the longest DNS label (RFC 1035).
const maxLabel = 63

// Template is a parsed server_host template.
type Template struct {
	raw string
	// lit are the literal parts around the two placeholders, in order;
	// userFirst says which placeholder comes first.
	lit       [3]string
	userFirst bool
}

// Parse reads a template. It must name {user} and {server} once each, in
// its first label (a certificate's wildcard covers one label), with a
// separator between them holding at least one character the escaping
// never produces ('-' or '.'), and a domain after the first label.
func Parse(tmpl string) (*Template, error) {
	t := &Template{raw: tmpl}
	if tmpl != strings.ToLower(tmpl) {
		return nil, fmt.Errorf("server_host %q: must be lower case", tmpl)
	}
	if strings.Count(tmpl, User) != 1 || strings.Count(tmpl, Server) != 1 {
		return nil, fmt.Errorf("server_host %q: must contain %s and %s once each", tmpl, User, Server)
	}
	iu, is := strings.Index(tmpl, User), strings.Index(tmpl, Server)
	first, second := User, Server
	t.userFirst = iu < is
	if !t.userFirst {
		first, second = Server, User
	}
	before, rest, _ := strings.Cut(tmpl, first)
	mid, after, _ := strings.Cut(rest, second)
	t.lit = [3]string{before, mid, after}
	if strings.Contains(before, ".") || strings.Contains(mid, ".") {
		return nil, fmt.Errorf("server_host %q: %s and %s must both be in the first label (one wildcard certificate covers one label)", tmpl, User, Server)
	}
	if mid == "" || !strings.ContainsAny(mid, "-") {
		return nil, fmt.Errorf("server_host %q: put a separator with a '-' between %s and %s (such as \"--\"), so every host names one server", tmpl, User, Server)
	}
	if !strings.HasPrefix(after, ".") || len(after) < 2 {
		return nil, fmt.Errorf("server_host %q: must end in a domain, such as {server}--{user}.hub.example.org", tmpl)
	}
	for _, part := range []string{before, mid, after[1:]} {
		for _, c := range part {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
				return nil, fmt.Errorf("server_host %q: %q is not allowed in a host name", tmpl, c)
			}
		}
	}
	if strings.Contains(after, "..") || strings.HasSuffix(after, ".") {
		return nil, fmt.Errorf("server_host %q: empty label", tmpl)
	}
	return t, nil
}

// String is the template as configured.
func (t *Template) String() string { return t.raw }

// Domain is the part after the first label ("hub.example.org"): the
// wildcard certificate "*.<Domain>" covers every server host.
func (t *Template) Domain() string { return t.lit[2][1:] }

// ErrTooLong is returned by Host for names whose host label would exceed
// 63 characters.
var ErrTooLong = errors.New("server host label longer than 63 characters")

// Host is the host of user's server.
func (t *Template) Host(user, server string) (string, error) {
	u, s := spawner.EscapeDNS(user), spawner.EscapeDNS(server)
	a, b := u, s
	if !t.userFirst {
		a, b = s, u
	}
	label := t.lit[0] + a + t.lit[1] + b
	if len(label) > maxLabel {
		return "", fmt.Errorf("%w: user %q, server %q", ErrTooLong, user, server)
	}
	return label + t.lit[2], nil
}

// Match reads a request's Host (a port is ignored, letter case too) back
// into the user and server it names; ok is false for any other host.
func (t *Template) Match(host string) (user, server string, ok bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	rest, found := strings.CutPrefix(host, t.lit[0])
	if !found {
		return "", "", false
	}
	rest, found = strings.CutSuffix(rest, t.lit[2])
	if !found || strings.Contains(rest, ".") {
		return "", "", false
	}
	// Escaped names never contain '-', and the separator does: the
	// first place it matches is the only one.
	i := strings.Index(rest, t.lit[1])
	if i <= 0 || i+len(t.lit[1]) >= len(rest) {
		return "", "", false
	}
	a, b := rest[:i], rest[i+len(t.lit[1]):]
	if strings.Contains(a, "-") || strings.Contains(b, "-") {
		return "", "", false
	}
	if !t.userFirst {
		a, b = b, a
	}
	user, ok1 := spawner.UnescapeDNS(a)
	server, ok2 := spawner.UnescapeDNS(b)
	if !ok1 || !ok2 || user == "" || server == "" {
		return "", "", false
	}
	// The one spelling of this server's host, and no other, reads back.
	if h, err := t.Host(user, server); err != nil || h != host {
		return "", "", false
	}
	return user, server, true
}
