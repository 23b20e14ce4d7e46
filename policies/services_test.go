package policies

import (
	"reflect"
	"strings"
	"testing"
)

const servicesPolicy = `images:
  notebook: {image: "hubgate/testapp:latest"}
teams:
  research:
    members: [alice]
    groups: ["oidc:researchers"]
    images: [notebook]
  teaching:
    members: [bob]
services:
  shiny:
    url: "http://shiny:3838"
    teams: [research]
    description: "Shared Shiny server"
  pgweb:
    url: "https://10.0.0.5"
    teams: [research, teaching]
    strip_prefix: false
`

func TestServicesParse(t *testing.T) {
	p, err := Parse("policy.yaml", []byte(servicesPolicy))
	if err != nil {
		t.Fatal(err)
	}
	shiny, pgweb := p.Services["shiny"], p.Services["pgweb"]
	if shiny == nil || shiny.Scheme != "http" || shiny.Dial != "shiny:3838" || !shiny.StripPrefix || shiny.Description != "Shared Shiny server" {
		t.Fatalf("shiny: %+v", shiny)
	}
	if pgweb == nil || pgweb.Scheme != "https" || pgweb.Dial != "10.0.0.5:443" || pgweb.StripPrefix || !reflect.DeepEqual(pgweb.Teams, []string{"research", "teaching"}) {
		t.Fatalf("pgweb: %+v", pgweb)
	}
	cases := []struct {
		user    string
		groups  []string
		service string
		want    bool
	}{
		{"alice", nil, "shiny", true},
		{"alice", nil, "pgweb", true},
		{"bob", nil, "shiny", false},
		{"bob", nil, "pgweb", true},
		{"carol", []string{"oidc:researchers"}, "shiny", true},
		{"carol", nil, "shiny", false},
		{"alice", nil, "nope", false},
	}
	for _, c := range cases {
		if got := p.ServiceAllowed(c.user, c.groups, c.service); got != c.want {
			t.Errorf("ServiceAllowed(%s, %v, %s) = %v", c.user, c.groups, c.service, got)
		}
		if got := p.Reaches(c.user, c.groups, ServiceTarget+c.service); got != c.want {
			t.Errorf("Reaches(%s, %v, service:%s) = %v", c.user, c.groups, c.service, got)
		}
	}
	if !p.Reaches("alice", nil, "notebook") || p.Reaches("bob", nil, "notebook") {
		t.Error("Reaches for an image differs from Allowed")
	}
	if g := p.Grant("alice", nil); !reflect.DeepEqual(g.Services, []string{"pgweb", "shiny"}) {
		t.Errorf("alice's services: %v", g.Services)
	}
	if g := p.Grant("bob", nil); !reflect.DeepEqual(g.Services, []string{"pgweb"}) {
		t.Errorf("bob's services: %v", g.Services)
	}
}

func TestServicesProblems(t *testing.T) {
	yaml := `teams:
  research: {members: [alice]}
services:
  a: {url: "ftp://x", teams: [research]}
  b: {url: "http://x/path", teams: [research]}
  c: {url: "http://user:secret@x", teams: [research]}
  d: {url: "http://x:99999", teams: [research]}
  e: {url: "http://x", teams: [reserch]}
  f: {teams: [research]}
  g: {url: "http://x"}
  Bad_Name: {url: "http://x", teams: [research], strip: true}
  h: {url: "shiny:3838", teams: [research]}
`
	_, err := Parse("policy.yaml", []byte(yaml))
	if err == nil {
		t.Fatal("accepted")
	}
	got := problemStrings(t, err)
	want := []string{
		`policy.yaml:4: services.a.url: invalid url "ftp://x": the scheme must be http or https, not "ftp"`,
		`policy.yaml:5: services.b.url: invalid url "http://x/path": scheme, host and port only, no path or query (strip_prefix says which path the service is sent)`,
		`policy.yaml:6: services.c.url: invalid url "http://REDACTED@x": no credentials in the url (the service learns who the user is from X-Hubgate-User and the signed assertion)`,
		`policy.yaml:7: services.d.url: invalid url "http://x:99999": port 99999 out of range 1 to 65535`,
		`policy.yaml:8: services.e.teams[0]: unknown team "reserch" (known: research)`,
		`policy.yaml:9: services.f.url: required: where the gateway reaches the service, such as "http://shiny:3838"`,
		`policy.yaml:10: services.g.teams: required: the teams whose members may use the service`,
		`policy.yaml:11: services.Bad_Name: invalid service name "Bad_Name": use 1 to 32 lower-case letters, digits or '-', starting and ending with a letter or digit`,
		`policy.yaml:11: services.Bad_Name.strip: unknown field (known fields: url, teams, strip_prefix, description)`,
		`policy.yaml:12: services.h.url: invalid url "shiny:3838": use "http://host:port" or "https://host", such as "http://shiny:3838"`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(err.Error(), "secret") {
		t.Error("a credential in a url reached the message")
	}
}
