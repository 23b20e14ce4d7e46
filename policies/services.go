package policies

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Service is a team service: an app that is not a user's container (a
// shared Shiny or dashboard server, a team database's web UI) served at
// /services/{name}/ to the members of the teams named, behind the same
// login, policy check and identity-header hygiene as user servers.
type Service struct {
	// Name is the service's key, filled from the key of the "services"
	// mapping; it is the {name} in /services/{name}/.
	Name string

	// URL is where the gateway reaches the service: "http://" or
	// "https://", a host (a container name on a network the gateway is
	// on, a host name or an address) and an optional port; no path,
	// query or credentials. Required.
	URL string

	// Scheme is URL's scheme ("http" or "https") and Dial its host:port
	// (the port filled in from the scheme when URL has none).
	Scheme, Dial string

	// Teams are the teams whose members may use the service, sorted.
	// Required (at least one).
	Teams []string

	// StripPrefix says the service is sent paths without the
	// /services/{name} prefix ("/services/x/a" arrives as "/a", with
	// X-Forwarded-Prefix: /services/x); false sends the path as it came,
	// for apps configured with their base path. In YAML "strip_prefix".
	// Default: true.
	StripPrefix bool

	// Description is shown on the home page.
	Description string
}

var serviceFields = []string{"url", "teams", "strip_prefix", "description"}

// teamRef is a service's reference to a team, checked once every file is
// merged.
type teamRef struct {
	field string
	at    pos
	team  string
}

func (p *parser) service(key, n *yaml.Node, field string) {
	svc := &Service{Name: key.Value, StripPrefix: true}
	if !keyRE.MatchString(key.Value) {
		p.add(key, field, "invalid service name %q: use 1 to 32 lower-case letters, digits or '-', starting and ending with a letter or digit", key.Value)
	}
	hasURL, hasTeams := false, false
	for _, e := range p.entries(n, field) {
		f := joinField(field, e.key.Value)
		if !p.known(e.key, f, serviceFields) || isNull(e.val) {
			continue
		}
		v := resolve(e.val)
		switch e.key.Value {
		case "url":
			hasURL = true
			s, ok := p.str(v, f)
			if !ok {
				continue
			}
			scheme, dial, err := serviceURL(s)
			if err != nil {
				p.add(v, f, "%v", err)
				continue
			}
			svc.URL, svc.Scheme, svc.Dial = s, scheme, dial
		case "teams":
			for i, item := range p.list(v, f) {
				fi := indexField(f, i)
				if s, ok := p.str(item, fi); ok {
					hasTeams = true
					svc.Teams = append(svc.Teams, s)
					p.frag.teamRefs = append(p.frag.teamRefs, teamRef{field: fi, at: p.at(resolve(item)), team: s})
				}
			}
		case "strip_prefix":
			svc.StripPrefix, _ = p.boolean(v, f)
		case "description":
			if s, ok := p.str(v, f); ok {
				svc.Description = s
			}
		}
	}
	if !hasURL {
		p.add(resolve(n), joinField(field, "url"), "required: where the gateway reaches the service, such as \"http://shiny:3838\"")
	}
	if !hasTeams {
		p.add(resolve(n), joinField(field, "teams"), "required: the teams whose members may use the service")
	}
	svc.Teams = sortedUnique(svc.Teams)
	p.frag.services = append(p.frag.services, def[*Service]{name: key.Value, at: p.at(key), val: svc})
}

// serviceURL checks a service's upstream URL and returns its scheme and
// the host:port to dial.
func serviceURL(s string) (scheme, dial string, err error) {
	u, perr := url.Parse(s)
	if perr != nil || u.Scheme == "" || u.Host == "" {
		return "", "", fmt.Errorf("invalid url %q: use \"http://host:port\" or \"https://host\", such as \"http://shiny:3838\"", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", fmt.Errorf("invalid url %q: the scheme must be http or https, not %q", s, u.Scheme)
	}
	if u.User != nil {
		return "", "", fmt.Errorf("invalid url %q: no credentials in the url (the service learns who the user is from X-Hubgate-User and the signed assertion)", redactUser(u))
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", "", fmt.Errorf("invalid url %q: scheme, host and port only, no path or query (strip_prefix says which path the service is sent)", s)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || strings.IndexFunc(host, badNameRune) >= 0 {
		return "", "", fmt.Errorf("invalid url %q: no host", s)
	}
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("invalid url %q: port %s out of range 1 to 65535", s, port)
	}
	return u.Scheme, net.JoinHostPort(host, port), nil
}

func redactUser(u *url.URL) string {
	c := *u
	c.User = url.User("REDACTED")
	return c.String()
}

// ServiceAllowed reports whether user (in canonical form), in the given
// identity-provider groups, may use the service name: some team of theirs
// is one of its teams.
func (p *Policy) ServiceAllowed(user string, groups []string, name string) bool {
	if p == nil {
		return false
	}
	svc := p.Services[name]
	if svc == nil {
		return false
	}
	for _, t := range p.byMember[user] {
		if slices.Contains(svc.Teams, t.Name) {
			return true
		}
	}
	for _, g := range groups {
		for _, t := range p.byGroup[NormalizeGroup(g)] {
			if slices.Contains(svc.Teams, t.Name) {
				return true
			}
		}
	}
	return false
}

// ServiceTarget is the prefix by which websockets to a team service are
// told apart from those to user servers (whose keys never contain ':').
const ServiceTarget = "service:"

// Reaches reports whether user, in groups, may still reach target: an
// image key of theirs, or ServiceTarget+name of a service of theirs. It
// is what a policy reload checks open websockets against.
func (p *Policy) Reaches(user string, groups []string, target string) bool {
	if name, ok := strings.CutPrefix(target, ServiceTarget); ok {
		return p.ServiceAllowed(user, groups, name)
	}
	return p.Allowed(user, groups, target)
}

// teamServices fills each team's services (the services naming it), for
// Grant and the diff.
func (p *Policy) teamServices() {
	for name, svc := range p.Services {
		for _, tn := range svc.Teams {
			if t := p.Teams[tn]; t != nil {
				t.services = append(t.services, name)
			}
		}
	}
	for _, t := range p.Teams {
		t.services = sortedUnique(t.services)
	}
}

// checkTeamRefs reports services naming teams that do not exist.
func checkTeamRefs(p *Policy, frags []*fragment) Errors {
	var probs Errors
	known := make([]string, 0, len(p.Teams))
	for k := range p.Teams {
		known = append(known, k)
	}
	slices.Sort(known)
	for _, f := range frags {
		for _, r := range f.teamRefs {
			if _, ok := p.Teams[r.team]; ok {
				continue
			}
			msg := fmt.Sprintf("unknown team %q (known: %s)", r.team, strings.Join(known, ", "))
			if len(known) == 0 {
				msg = fmt.Sprintf("unknown team %q (no teams are defined)", r.team)
			}
			probs = append(probs, Problem{File: r.at.file, Line: r.at.line, Field: r.field, Message: msg})
		}
	}
	return probs
}

// serviceChanges compares two definitions of one service.
func serviceChanges(o, n *Service) []Change {
	switch {
	case o == nil && n == nil:
		return nil
	case o == nil:
		return []Change{{What: "service", Op: "+", Value: n.URL}}
	case n == nil:
		return []Change{{What: "service", Op: "-", Value: o.URL}}
	}
	var cs []Change
	cs = append(cs, valueChange("url", o.URL, n.URL)...)
	cs = append(cs, listChanges("team", o.Teams, n.Teams)...)
	cs = append(cs, valueChange("strip_prefix", strconv.FormatBool(o.StripPrefix), strconv.FormatBool(n.StripPrefix))...)
	return cs
}
