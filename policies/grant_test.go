package policies

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

const grantPolicy = `admins: [monika, root]
accounts:
  alice: "` + testHash + `"
api_tokens:
  ci: ` + testTokenHash1 + `
images:
  notebook: {image: n}
  rstudio: {image: r}
  vscode: {image: v}
teams:
  research:
    members: [monika, alice]
    groups: ["github:Org/Data-Science"]
    images: [notebook, rstudio]
    repos: [org/analysis]
    github_token: true
    limits: {memory: 4GiB, cpus: 2, pids: 512}
    idle_timeout: 2h
    max_age: 24h
  teaching:
    members: [alice, bob]
    groups: ["oidc:students"]
    images: [notebook]
    repos: [org/course, org/analysis]
    limits: {memory: 1GiB, cpus: 4, pids: 0}
    idle_timeout: 30m
    max_age: 48h
  unlimited:
    members: [carol]
    images: [vscode]
    repos: [org/tools]
    limits: {memory: 0, pids: 0}
  tokenless:
    members: [dave]
    images: [vscode]
    repos: [org/secret]
    github_token: false
    limits: {memory: 2GiB, cpus: 1, pids: 100}
    idle_timeout: 1h
`

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return p
}

func TestGrant(t *testing.T) {
	p := mustParse(t, grantPolicy)
	tests := []struct {
		name   string
		user   string
		groups []string
		want   Grant
	}{
		{
			name: "one team by membership",
			user: "bob",
			want: Grant{User: "bob", Teams: []string{"teaching"}, Images: []string{"notebook"},
				Repos: []string{"org/analysis", "org/course"}, Limits: Limits{Memory: 1 << 30, CPUs: 4},
				IdleTimeout: 30 * time.Minute, MaxAge: 48 * time.Hour},
		},
		{
			name: "two teams: union, largest limits, zero pids is unlimited",
			user: "alice",
			want: Grant{User: "alice", Teams: []string{"research", "teaching"}, Images: []string{"notebook", "rstudio"},
				Repos: []string{"org/analysis", "org/course"}, Limits: Limits{Memory: 4 << 30, CPUs: 4, Pids: 0},
				IdleTimeout: 2 * time.Hour, MaxAge: 48 * time.Hour, GitHubToken: true},
		},
		{
			name: "admin in a team",
			user: "monika",
			want: Grant{User: "monika", Admin: true, Teams: []string{"research"}, Images: []string{"notebook", "rstudio"},
				Repos: []string{"org/analysis"}, Limits: Limits{Memory: 4 << 30, CPUs: 2, Pids: 512},
				IdleTimeout: 2 * time.Hour, MaxAge: 24 * time.Hour, GitHubToken: true},
		},
		{
			name: "admin in no team",
			user: "root",
			want: Grant{User: "root", Admin: true, Teams: []string{}, Images: []string{}, Repos: []string{}},
		},
		{
			name: "unknown user",
			user: "mallory",
			want: Grant{User: "mallory", Teams: []string{}, Images: []string{}, Repos: []string{}},
		},
		{
			name:   "by group, case-insensitive for github",
			user:   "erin",
			groups: []string{"github:org/data-science", "oidc:other"},
			want: Grant{User: "erin", Teams: []string{"research"}, Images: []string{"notebook", "rstudio"},
				Repos: []string{"org/analysis"}, Limits: Limits{Memory: 4 << 30, CPUs: 2, Pids: 512},
				IdleTimeout: 2 * time.Hour, MaxAge: 24 * time.Hour, GitHubToken: true},
		},
		{
			name:   "oidc groups are case-sensitive",
			user:   "erin",
			groups: []string{"oidc:Students"},
			want:   Grant{User: "erin", Teams: []string{}, Images: []string{}, Repos: []string{}},
		},
		{
			name:   "member and group of the same team counts once",
			user:   "bob",
			groups: []string{"oidc:students"},
			want: Grant{User: "bob", Teams: []string{"teaching"}, Images: []string{"notebook"},
				Repos: []string{"org/analysis", "org/course"}, Limits: Limits{Memory: 1 << 30, CPUs: 4},
				IdleTimeout: 30 * time.Minute, MaxAge: 48 * time.Hour},
		},
		{
			name:   "unset limits and timeouts win",
			user:   "carol",
			groups: []string{"oidc:students"},
			want: Grant{User: "carol", Teams: []string{"teaching", "unlimited"}, Images: []string{"notebook", "vscode"},
				Repos: []string{"org/analysis", "org/course", "org/tools"}},
		},
		{
			name:   "github token only from a team that grants it",
			user:   "dave",
			groups: []string{"oidc:students"},
			want: Grant{User: "dave", Teams: []string{"teaching", "tokenless"}, Images: []string{"notebook", "vscode"},
				Repos: []string{"org/analysis", "org/course", "org/secret"}, Limits: Limits{Memory: 2 << 30, CPUs: 4},
				IdleTimeout: time.Hour, MaxAge: 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Grant(tt.user, tt.groups)
			tt.want.PolicyHash = p.Hash
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Grant(%q, %q) =\n%+v\nwant\n%+v", tt.user, tt.groups, got, tt.want)
			}
			for _, img := range []string{"notebook", "rstudio", "vscode", "nope"} {
				want := false
				for _, g := range tt.want.Images {
					want = want || g == img
				}
				if got := p.Allowed(tt.user, tt.groups, img); got != want {
					t.Errorf("Allowed(%q, %q, %q) = %v, want %v", tt.user, tt.groups, img, got, want)
				}
			}
			if got, want := p.Known(tt.user, tt.groups), tt.want.Admin || len(tt.want.Teams) > 0; got != want {
				t.Errorf("Known(%q, %q) = %v, want %v", tt.user, tt.groups, got, want)
			}
			if got := p.IsAdmin(tt.user); got != tt.want.Admin {
				t.Errorf("IsAdmin(%q) = %v, want %v", tt.user, got, tt.want.Admin)
			}
		})
	}
}

func TestNilPolicy(t *testing.T) {
	var p *Policy
	if p.Allowed("a", nil, "x") || p.Known("a", nil) || p.IsAdmin("a") || p.CheckPassword("a", "b") {
		t.Error("nil policy lets someone in")
	}
	if g := p.Grant("a", nil); g.Admin || len(g.Images) != 0 {
		t.Errorf("nil policy grants %+v", g)
	}
	if _, ok := p.LookupAPIToken("tok-1"); ok {
		t.Error("nil policy knows a token")
	}
}

func TestNormalize(t *testing.T) {
	users := map[string]string{" Alice ": "alice", "BOB": "bob", "ZOË": "zoë", "\tx\n": "x"}
	for in, want := range users {
		if got := NormalizeUser(in); got != want {
			t.Errorf("NormalizeUser(%q) = %q, want %q", in, got, want)
		}
	}
	groups := map[string]string{" GitHub:Org/Team ": "github:org/team", "oidc:Researchers": "oidc:Researchers", "github:a": "github:a"}
	for in, want := range groups {
		if got := NormalizeGroup(in); got != want {
			t.Errorf("NormalizeGroup(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLookupAPIToken(t *testing.T) {
	p := mustParse(t, grantPolicy)
	if name, ok := p.LookupAPIToken("tok-1"); !ok || name != "ci" {
		t.Errorf("LookupAPIToken(tok-1) = %q, %v", name, ok)
	}
	for _, tok := range []string{"tok-2", "", testTokenHash1} {
		if name, ok := p.LookupAPIToken(tok); ok {
			t.Errorf("LookupAPIToken(%q) = %q, want not found", tok, name)
		}
	}
}

func TestCheckPassword(t *testing.T) {
	p := mustParse(t, grantPolicy)
	if !p.CheckPassword("alice", "s3cret") {
		t.Error("alice's password refused")
	}
	if p.CheckPassword("alice", "wrong") {
		t.Error("wrong password accepted")
	}
	if p.CheckPassword("bob", "s3cret") {
		t.Error("user without an account accepted")
	}
}

// benchPolicy has 500 teams; user u42 is in two of them by membership
// (t41, t42) and in t250 through the group oidc:g250.
func benchPolicy(b *testing.B) *Policy {
	src := "admins: [root]\nimages:\n"
	for i := range 20 {
		src += fmt.Sprintf("  img%d: {image: x}\n", i)
	}
	src += "teams:\n"
	for i := range 500 {
		src += fmt.Sprintf("  t%d: {members: [u%d, u%d], groups: [\"oidc:g%d\"], images: [img%d]}\n", i, i, i+1, i, i%20)
	}
	p, err := Parse("bench.yaml", []byte(src))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func BenchmarkAllowed(b *testing.B) {
	p := benchPolicy(b)
	groups := []string{"oidc:g250", "github:org/none"}
	b.ReportAllocs()
	for b.Loop() {
		if !p.Allowed("u42", groups, "img10") { // via the group's team t250
			b.Fatal("not allowed")
		}
	}
}

func BenchmarkGrant(b *testing.B) {
	p := benchPolicy(b)
	groups := []string{"oidc:g250"}
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Grant("u42", groups)
	}
}
