package policies

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseEgressRule(t *testing.T) {
	good := map[string]string{
		"pypi.org":               "pypi.org:443",
		"PyPI.org.":              "pypi.org:443",
		"deb.debian.org:80":      "deb.debian.org:80",
		"*.pythonhosted.org":     "*.pythonhosted.org:443",
		"*.Example.org:8443":     "*.example.org:8443",
		"10.1.2.3:5432":          "10.1.2.3:5432",
		"[2001:db8::1]":          "[2001:db8::1]:443",
		"[2001:DB8:0::1]:22":     "[2001:db8::1]:22",
		"xn--bcher-kva.example":  "xn--bcher-kva.example:443",
		"git-server:3000":        "git-server:3000",
		"a-b.c":                  "a-b.c:443",
		"allowed.test:443":       "allowed.test:443",
		"host.with.many.labels9": "host.with.many.labels9:443",
	}
	for in, want := range good {
		got, err := ParseEgressRule(in)
		if err != nil || got != want {
			t.Errorf("ParseEgressRule(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                   "empty egress rule",
		"*":                  "would allow everything",
		"*:443":              "would allow everything",
		"*.":                 "would allow everything",
		"example.org:0":      "port \"0\" must be a number from 1 to 65535",
		"example.org:65536":  "must be a number from 1 to 65535",
		"example.org:https":  "must be a number",
		"example.org:":       "must be a number",
		"ex ample.org":       "not allowed in a host name",
		"a.*.example.org":    "only as the first label",
		"**.example.org":     "only as the first label",
		"bücher.example":     "xn-- form",
		"-a.example":         "not allowed in a host name",
		"a..example":         "empty or over-long label",
		"2001:db8::1":        "in brackets",
		"[2001:db8::1":       "missing \"]\"",
		"[10.0.0.1]:443":     "not an IPv6 address",
		"[2001:db8::1]x":     "expected \":port\"",
		"http://example.org": "without a scheme",
		"example.org/path":   "not allowed in a host name",
	}
	for in, want := range bad {
		got, err := ParseEgressRule(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseEgressRule(%q) = %q, %v; want an error containing %q", in, got, err, want)
		}
	}
}

func TestEgressAllows(t *testing.T) {
	rules := []string{"*.pythonhosted.org:443", "10.1.2.3:5432", "[2001:db8::1]:443", "deb.debian.org:80", "pypi.org:443"}
	tests := []struct {
		host string
		port int
		want bool
	}{
		{"pypi.org", 443, true},
		{"PYPI.ORG.", 443, true},
		{"pypi.org", 80, false},
		{"evilpypi.org", 443, false},
		{"pypi.org.evil.com", 443, false},
		{"files.pythonhosted.org", 443, true},
		{"a.b.pythonhosted.org", 443, true},
		{"pythonhosted.org", 443, false}, // the suffix itself is not below it
		{"xpythonhosted.org", 443, false},
		{"deb.debian.org", 80, true},
		{"deb.debian.org", 443, false},
		{"10.1.2.3", 5432, true},
		{"::ffff:10.1.2.3", 5432, true},
		{"10.1.2.4", 5432, false},
		{"2001:db8::1", 443, true},
		{"[2001:DB8::1]", 443, true},
		{"example.com", 443, false},
	}
	for _, tt := range tests {
		if got := EgressAllows(rules, tt.host, tt.port); got != tt.want {
			t.Errorf("EgressAllows(%s:%d) = %v, want %v", tt.host, tt.port, got, tt.want)
		}
	}
	if EgressAllows(nil, "pypi.org", 443) {
		t.Error("an empty list allows something")
	}
}

func TestParseEgress(t *testing.T) {
	src := `images:
  nb: {image: x}
teams:
  research:
    members: [alice]
    images: [nb]
    egress: [pypi.org, "*.pythonhosted.org", PYPI.org:443]
  teaching:
    members: [alice, bob]
    egress: [deb.debian.org:80]
  closed:
    members: [carol]
    egress: []
`
	p, err := Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Teams["research"].Egress, []string{"*.pythonhosted.org:443", "pypi.org:443"}; !reflect.DeepEqual(got, want) {
		t.Errorf("research egress = %q, want %q", got, want)
	}
	if got, want := p.Grant("alice", nil).Egress, []string{"*.pythonhosted.org:443", "deb.debian.org:80", "pypi.org:443"}; !reflect.DeepEqual(got, want) {
		t.Errorf("alice's egress = %q, want %q", got, want)
	}
	if got := p.Grant("carol", nil).Egress; len(got) != 0 {
		t.Errorf("carol's egress = %#v, want none", got)
	}
	if got := p.Grant("nobody", nil).Egress; len(got) != 0 {
		t.Errorf("a stranger's egress = %#v, want none", got)
	}

	_, err = Parse("team.yaml", []byte(`teams:
  research:
    egress:
      - pypi.org
      - "example.org:99999"
      - "*"
      - {host: x}
    `))
	want := []string{
		`team.yaml:5: teams.research.egress[1]: invalid egress rule "example.org:99999": port "99999" must be a number from 1 to 65535`,
		`team.yaml:6: teams.research.egress[2]: invalid egress rule "*": a rule must name a host or a suffix ("*" alone would allow everything)`,
		`team.yaml:7: teams.research.egress[3]: expected a string, got a mapping`,
	}
	if got := problemStrings(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
