package policies

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// DefaultEgressPort is the port of an egress rule that names none: HTTPS.
const DefaultEgressPort = 443

// An egress rule says which host and port a team's containers may reach
// through the deployment's egress proxy. In YAML it is a string:
//
//	pypi.org            the host pypi.org, port 443
//	pypi.org:443        the same
//	deb.debian.org:80   plain HTTP
//	*.pythonhosted.org  any name below pythonhosted.org (not the name
//	                    itself), port 443
//	10.1.2.3:5432       an IPv4 address; an IPv6 address is written
//	                    [2001:db8::1]:443
//
// Host names are case-insensitive and stored lower-case, with a trailing
// dot removed; non-ASCII names are written in their xn-- form. Rules are
// stored normalized as "host:port".

// ParseEgressRule checks one egress rule and returns its normalized form
// "host:port", or why it is not a rule.
func ParseEgressRule(s string) (string, error) {
	raw := s
	if s == "" {
		return "", fmt.Errorf("empty egress rule: use \"host\", \"host:port\" or \"*.suffix:port\"")
	}
	if strings.Contains(s, "://") {
		return "", fmt.Errorf("invalid egress rule %q: write the host and port without a scheme, such as \"example.org:443\"", raw)
	}
	host, port := s, DefaultEgressPort
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return "", fmt.Errorf("invalid egress rule %q: missing \"]\" after the IPv6 address", raw)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return "", fmt.Errorf("invalid egress rule %q: expected \":port\" after \"]\"", raw)
			}
			n, err := parsePort(p)
			if err != nil {
				return "", fmt.Errorf("invalid egress rule %q: %w", raw, err)
			}
			port = n
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", fmt.Errorf("invalid egress rule %q: %q is not an IPv6 address", raw, host)
		}
		return "[" + a.String() + "]:" + strconv.Itoa(port), nil
	}
	if i := strings.LastIndex(s, ":"); i >= 0 {
		if strings.Count(s, ":") > 1 {
			return "", fmt.Errorf("invalid egress rule %q: write an IPv6 address in brackets, such as \"[2001:db8::1]:443\"", raw)
		}
		n, err := parsePort(s[i+1:])
		if err != nil {
			return "", fmt.Errorf("invalid egress rule %q: %w", raw, err)
		}
		host, port = s[:i], n
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
		return a.String() + ":" + strconv.Itoa(port), nil
	}
	name, err := egressHost(host)
	if err != nil {
		return "", fmt.Errorf("invalid egress rule %q: %w", raw, err)
	}
	return name + ":" + strconv.Itoa(port), nil
}

func parsePort(p string) (int, error) {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || strings.HasPrefix(p, "+") || strings.HasPrefix(p, "0") {
		return 0, fmt.Errorf("port %q must be a number from 1 to 65535", p)
	}
	return n, nil
}

// egressHost checks a host name or "*.suffix" pattern and returns it
// lower-case without a trailing dot.
func egressHost(h string) (string, error) {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	name := h
	wild := strings.HasPrefix(h, "*.")
	if wild {
		name = h[2:]
	}
	if name == "" || name == "*" {
		return "", fmt.Errorf("a rule must name a host or a suffix (\"*\" alone would allow everything)")
	}
	if len(name) > 253 {
		return "", fmt.Errorf("host name longer than 253 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("host %q has an empty or over-long label", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			case c == '-' && i > 0 && i < len(label)-1:
			case c == '*':
				return "", fmt.Errorf("\"*\" is allowed only as the first label, as in \"*.example.org\"")
			case c >= 0x80:
				return "", fmt.Errorf("host %q is not ASCII: write it in its xn-- form", h)
			default:
				return "", fmt.Errorf("host %q: %q is not allowed in a host name", h, string(c))
			}
		}
	}
	return h, nil
}

// EgressAllows reports whether the normalized rules allow host (a name or
// an IP address, in any case) and port. "*.suffix:port" matches names
// below suffix, not suffix itself.
func EgressAllows(rules []string, host string, port int) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		h = a.Unmap().String()
		if a.Unmap().Is6() {
			h = "[" + h + "]"
		}
	}
	p := ":" + strconv.Itoa(port)
	for _, r := range rules {
		rh, ok := strings.CutSuffix(r, p)
		if !ok {
			continue
		}
		if rh == h {
			return true
		}
		if suffix, wild := strings.CutPrefix(rh, "*"); wild && len(h) > len(suffix) && strings.HasSuffix(h, suffix) {
			return true
		}
	}
	return false
}

// egress parses a team's egress list.
func (p *parser) egress(n *yaml.Node, field string) []string {
	var out []string
	for i, item := range p.list(n, field) {
		fi := indexField(field, i)
		s, ok := p.str(item, fi)
		if !ok {
			continue
		}
		r, err := ParseEgressRule(s)
		if err != nil {
			p.add(resolve(item), fi, "%v", err)
			continue
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	if out == nil {
		out = []string{}
	}
	return out
}
