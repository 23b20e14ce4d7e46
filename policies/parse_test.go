package policies

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// bcrypt hashes of "s3cret" (cost 4, fast for tests).
const testHash = "$2a$04$MlVV09LdIdyQQCCTBpyK2.xL2noDc.kaZjLtT6ayHWkvnuJj0M9R."

// sha256 of "tok-1" and "tok-2".
const (
	testTokenHash1 = "65dcf16ea3dfa49069628089eb4a75483070f5584b2a21ee64912b5f621f12da"
	testTokenHash2 = "b9d7f2826c798e990d30dd291fddb436a01327c293788ce57195e60c7efb82b2"
)

func problemStrings(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, not Errors: %v", err, err)
	}
	out := make([]string, len(errs))
	for i, p := range errs {
		out[i] = p.String()
	}
	return out
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "syntax error has its line",
			yaml: "admins: [monika]\nteams:\n\tresearch: {}\n",
			want: []string{"policy.yaml:3: invalid YAML: found character that cannot start any token"},
		},
		{
			name: "parser error has its line",
			yaml: "admins: [monika]\nteams:\n  research: {}\n bad: {}\n",
			want: []string{"policy.yaml:4: invalid YAML: did not find expected key"},
		},
		{
			name: "unclosed flow list",
			yaml: "admins: [monika]\nteams:\n  research:\n    members: [a, b\n    images: []\n",
			want: []string{"policy.yaml:4: invalid YAML: did not find expected ',' or ']'"},
		},
		{
			name: "unknown anchor",
			yaml: "admins: [monika]\nteams: *nope\n",
			want: []string{"policy.yaml:2: invalid YAML: unknown anchor 'nope' referenced"},
		},
		{
			name: "control character",
			yaml: "admins: [monika]\nteams: \x01\n",
			want: []string{"policy.yaml:2: invalid YAML: control characters are not allowed"},
		},
		{
			name: "two documents",
			yaml: "admins: [monika]\n---\nadmins: [alice]\n",
			want: []string{`policy.yaml:2: a policy file holds one YAML document; found another (remove the "---" or split the file)`},
		},
		{
			name: "top level is a list",
			yaml: "- monika\n",
			want: []string{"policy.yaml:1: expected a mapping with admins, accounts, images, teams, api_tokens, defaults, services, retention at the top level, got a list"},
		},
		{
			name: "unknown fields at every level, with suggestions",
			yaml: `team: {}
images:
  notebook:
    image: x
    prot: 8888
teams:
  research:
    member: [alice]
    colour: blue
    limits: {mem: 1GiB}
`,
			want: []string{
				`policy.yaml:1: team: unknown field (did you mean "teams"?)`,
				`policy.yaml:5: images.notebook.prot: unknown field (did you mean "port"?)`,
				`policy.yaml:8: teams.research.member: unknown field (did you mean "members"?)`,
				`policy.yaml:9: teams.research.colour: unknown field (known fields: members, groups, images, repos, limits, idle_timeout, max_age, github_token, egress, storage)`,
				`policy.yaml:10: teams.research.limits.mem: unknown field (known fields: memory, cpus, pids)`,
			},
		},
		{
			name: "defined twice in one file",
			yaml: `images:
  notebook: {image: a}
  notebook: {image: b}
teams:
  research: {}
  research: {}
accounts:
  alice: "` + testHash + `"
  Alice: "` + testHash + `"
api_tokens:
  ci: ` + testTokenHash1 + `
  ci: ` + testTokenHash2 + `
`,
			want: []string{
				"policy.yaml:3: images.notebook: defined twice (also at policy.yaml:2)",
				"policy.yaml:6: teams.research: defined twice (also at policy.yaml:5)",
				"policy.yaml:9: accounts.alice: defined twice (also at policy.yaml:8)",
				"policy.yaml:12: api_tokens.ci: defined twice (also at policy.yaml:11)",
			},
		},
		{
			name: "top-level section twice",
			yaml: "teams: {}\nadmins: []\nteams: {}\n",
			want: []string{"policy.yaml:3: teams: defined twice (also at policy.yaml:1)"},
		},
		{
			name: "wrong types",
			yaml: `admins: monika
images:
  notebook:
    image: [a]
    port: "8888"
    description: true
    command: run
    env: [A]
teams:
  research:
    members: {alice: 1}
    groups: [~]
    limits: {cpus: "2", pids: 1.5, memory: [1]}
    idle_timeout: {}
    github_token: "yes"
`,
			want: []string{
				`policy.yaml:1: admins: expected a list, got the string "monika"`,
				`policy.yaml:4: images.notebook.image: expected a string, got a list`,
				`policy.yaml:5: images.notebook.port: expected an integer, got the string "8888"`,
				`policy.yaml:6: images.notebook.description: expected a string, got the boolean true (quote it if you mean the text)`,
				`policy.yaml:7: images.notebook.command: expected a list, got the string "run"`,
				`policy.yaml:8: images.notebook.env: expected a mapping, got a list`,
				`policy.yaml:11: teams.research.members: expected a list, got a mapping`,
				`policy.yaml:12: teams.research.groups[0]: expected a string, got nothing (null) (quote it if you mean the text)`,
				`policy.yaml:13: teams.research.limits.cpus: expected a number, got the string "2"`,
				`policy.yaml:13: teams.research.limits.pids: expected an integer, got the number 1.5`,
				`policy.yaml:13: teams.research.limits.memory: expected a size such as "512MiB" or "4GiB", got a list`,
				`policy.yaml:14: teams.research.idle_timeout: expected a duration such as "2h" or "30m", got a mapping`,
				`policy.yaml:15: teams.research.github_token: expected true or false, got the string "yes"`,
			},
		},
		{
			name: "image values",
			yaml: `images:
  Notebook: {image: a}
  a-very-long-image-key-that-is-longer-than-32: {image: a}
  missing: {port: 80}
  empty:
  bad:
    image: "has space"
    port: 70000
    home: relative/path
    url: lab
    env:
      1BAD: x
      HUBGATE_TOKEN: x
      jupyterhub_api_url: x
  root:
    image: x
    port: 0
    home: /
    url: //evil.example
`,
			want: []string{
				`policy.yaml:2: images.Notebook: invalid image key "Notebook": use 1 to 32 lower-case letters, digits or '-', starting and ending with a letter or digit`,
				`policy.yaml:3: images.a-very-long-image-key-that-is-longer-than-32: invalid image key "a-very-long-image-key-that-is-longer-than-32": use 1 to 32 lower-case letters, digits or '-', starting and ending with a letter or digit`,
				`policy.yaml:4: images.missing.image: required: the container image to run, such as "hubgate/jupyterlab:latest"`,
				`policy.yaml:5: images.empty.image: required: the container image to run, such as "hubgate/jupyterlab:latest"`,
				`policy.yaml:7: images.bad.image: invalid image reference "has space"`,
				`policy.yaml:8: images.bad.port: port 70000 out of range 1 to 65535`,
				`policy.yaml:9: images.bad.home: invalid home "relative/path": must be an absolute path other than "/"`,
				`policy.yaml:10: images.bad.url: invalid url "lab": must be a path starting with a single "/", such as "/lab"`,
				`policy.yaml:12: images.bad.env.1BAD: invalid environment variable name "1BAD": use letters, digits and '_', not starting with a digit`,
				`policy.yaml:13: images.bad.env.HUBGATE_TOKEN: environment variables starting with HUBGATE_ or JUPYTERHUB_ are set by hubgate`,
				`policy.yaml:14: images.bad.env.jupyterhub_api_url: environment variables starting with HUBGATE_ or JUPYTERHUB_ are set by hubgate`,
				`policy.yaml:17: images.root.port: port 0 out of range 1 to 65535`,
				`policy.yaml:18: images.root.home: invalid home "/": must be an absolute path other than "/"`,
				`policy.yaml:19: images.root.url: invalid url "//evil.example": must be a path starting with a single "/", such as "/lab"`,
			},
		},
		{
			name: "user names",
			yaml: `admins: ["a b", "x/y", "", "` + strings.Repeat("a", 65) + `"]
teams:
  research:
    members: [alice, "tab\there", "ctl\u0007"]
`,
			want: []string{
				`policy.yaml:1: admins[0]: invalid user name "a b": contains U+0020 (" "), white space`,
				`policy.yaml:1: admins[1]: invalid user name "x/y": contains U+002F ("/"), a path separator`,
				`policy.yaml:1: admins[2]: invalid user name "": empty`,
				`policy.yaml:1: admins[3]: invalid user name "` + strings.Repeat("a", 65) + `": too long: 65 characters, at most 64`,
				`policy.yaml:4: teams.research.members[1]: invalid user name "tab\there": contains U+0009, white space`,
				`policy.yaml:4: teams.research.members[2]: invalid user name "ctl\a": contains U+0007, a control character`,
			},
		},
		{
			// M2: names that would fold into another's, or pose as it.
			name: "look-alike user names",
			yaml: `admins: ["\u212Amonika", " monika"]
accounts:
  "\u0130nci": "` + testHash + `"
teams:
  research:
    members: ["ａｄｍｉｎ", "admin\u200B", "\u0430dmin", "i\u0307"]
`,
			want: []string{
				`policy.yaml:1: admins[0]: invalid user name "Kmonika": contains U+212A ("K"), a variant of "K" (compatibility or width form); write "K" instead`,
				`policy.yaml:1: admins[1]: invalid user name " monika": contains U+0020 (" "), white space`,
				`policy.yaml:3: accounts["İnci"]: invalid user name "İnci": contains U+0130 ("İ"), which lower-cases to "i", the lower case of another letter; write the name in lower case`,
				`policy.yaml:6: teams.research.members[0]: invalid user name "ａｄｍｉｎ": contains U+FF41 ("ａ"), a variant of "a" (compatibility or width form); write "a" instead`,
				`policy.yaml:6: teams.research.members[1]: invalid user name "admin\u200b": contains U+200B, an invisible character (zero-width, bidi control or other default-ignorable code point)`,
				`policy.yaml:6: teams.research.members[2]: invalid user name "аdmin": mixes letters of the Cyrillic and Latin scripts: names mixing scripts can pose as others ("аdmin" with a Cyrillic "а")`,
				`policy.yaml:6: teams.research.members[3]: invalid user name "i̇": contains U+0307 on "i": it looks like a letter of its own; use the precomposed letter or leave the mark out`,
			},
		},
		{
			name: "team values",
			yaml: `images:
  notebook: {image: x}
  rstudio: {image: y}
teams:
  Research: {}
  research:
    groups: ["github:org/team", "researchers", "oidc:", "oidc:two words"]
    images: [notebook, rstuido]
    repos: [owner/name, "no-slash", "-bad/name", "owner/..", "owner/with space"]
    limits: {memory: 1MiB, cpus: 2000, pids: 8}
    idle_timeout: 3600
    max_age: 1d
  negative:
    limits: {memory: 12XB, cpus: -1}
    idle_timeout: -1h
    github_token: true
`,
			want: []string{
				`policy.yaml:5: teams.Research: invalid team name "Research": use 1 to 32 lower-case letters, digits or '-', starting and ending with a letter or digit`,
				`policy.yaml:7: teams.research.groups[1]: invalid group "researchers": use "kind:name" without white space, such as "github:org/team" or "oidc:researchers"`,
				`policy.yaml:7: teams.research.groups[2]: invalid group "oidc:": use "kind:name" without white space, such as "github:org/team" or "oidc:researchers"`,
				`policy.yaml:7: teams.research.groups[3]: invalid group "oidc:two words": use "kind:name" without white space, such as "github:org/team" or "oidc:researchers"`,
				`policy.yaml:8: teams.research.images[1]: unknown image "rstuido" (known: notebook, rstudio)`,
				`policy.yaml:9: teams.research.repos[1]: invalid repo "no-slash": use "owner/name", such as "praekelt/analysis"`,
				`policy.yaml:9: teams.research.repos[2]: invalid repo "-bad/name": use "owner/name", such as "praekelt/analysis"`,
				`policy.yaml:9: teams.research.repos[3]: invalid repo "owner/..": use "owner/name", such as "praekelt/analysis"`,
				`policy.yaml:9: teams.research.repos[4]: invalid repo "owner/with space": use "owner/name", such as "praekelt/analysis"`,
				`policy.yaml:10: teams.research.limits.memory: memory 1MiB too low: at least 6MiB (0 means no limit)`,
				`policy.yaml:10: teams.research.limits.cpus: cpus 2000 out of range: more than 0 and at most 1024 (0 means no limit)`,
				`policy.yaml:10: teams.research.limits.pids: pids 8 too low: at least 16 (0 means no limit)`,
				`policy.yaml:11: teams.research.idle_timeout: invalid duration "3600": use Go syntax such as "2h", "30m" or "1h30m" (0 means never)`,
				`policy.yaml:12: teams.research.max_age: invalid duration "1d": use Go syntax such as "2h", "30m" or "1h30m" (0 means never)`,
				`policy.yaml:14: teams.negative.limits.memory: invalid size "12XB": use a number of bytes or a number with a unit such as "512MiB", "4GiB" or "1G"`,
				`policy.yaml:14: teams.negative.limits.cpus: cpus -1 out of range: more than 0 and at most 1024 (0 means no limit)`,
				`policy.yaml:15: teams.negative.idle_timeout: invalid duration "-1h": must not be negative`,
				`policy.yaml:16: teams.negative.github_token: has no effect without repos: the token is only handed to containers of teams with repos`,
			},
		},
		{
			name: "unknown image with no images defined",
			yaml: "teams:\n  research:\n    images: [notebook]\n",
			want: []string{`policy.yaml:3: teams.research.images[0]: unknown image "notebook" (no images are defined)`},
		},
		{
			name: "accounts and tokens",
			yaml: `accounts:
  alice: hunter2
  "bob smith": "` + testHash + `"
  carol: 42
  dave: "$2a$04$short"
api_tokens:
  ci: tok-1
  "bad name": ` + testTokenHash1 + `
  deploy: ` + strings.ToUpper(testTokenHash1) + `
  ci2: ` + testTokenHash1 + `
`,
			want: []string{
				"policy.yaml:2: accounts.alice: not a bcrypt hash; generate one with `caddy hash-password` and paste its output",
				`policy.yaml:3: accounts["bob smith"]: invalid user name "bob smith": contains U+0020 (" "), white space`,
				"policy.yaml:4: accounts.carol: not a bcrypt hash; generate one with `caddy hash-password` and paste its output",
				"policy.yaml:5: accounts.dave: not a bcrypt hash; generate one with `caddy hash-password` and paste its output",
				"policy.yaml:7: api_tokens.ci: not a SHA-256 hash; give the token's hex SHA-256 (64 hex characters), such as the output of `printf %s TOKEN | sha256sum`",
				`policy.yaml:8: api_tokens["bad name"]: invalid API token name "bad name": use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
				`policy.yaml:10: api_tokens.ci2: same token hash as api_tokens.deploy (at policy.yaml:9); give each client its own token`,
			},
		},
		{
			name: "self-referencing anchors do not hang",
			yaml: "admins: &a [*a]\nimages:\n  x: &x {<<: *x}\n",
			want: []string{
				"policy.yaml:1: alias *a is inside the node it refers to: it stands for an endless document",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("policy.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded (%s), want problems:\n%s", p.Summary(), strings.Join(tt.want, "\n"))
			}
			if p != nil {
				t.Errorf("Parse returned a policy along with an error")
			}
			got := problemStrings(t, err)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err.Error() != strings.Join(tt.want, "\n") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestParseValid(t *testing.T) {
	src := `# a comment
admins: [Monika, monika, ZOË]
accounts:
  Alice: "` + testHash + `"
api_tokens:
  ci: ` + strings.ToUpper(testTokenHash1) + `
images:
  notebook:
    image: hubgate/jupyterlab:latest
  rstudio:
    image: hubgate/rstudio:latest
    port: 8787
    description: RStudio
    command: [/init, --port, 8787, true]
    env: {TZ: Europe/London, DEBUG: 1, EMPTY: }
    home: /home/rstudio/
    url: /?x=1
teams:
  research:
    members: [bob, Alice, alice, BOB]
    groups: ["GitHub:Org/Team", "oidc:Researchers", "oidc:Researchers"]
    images: [rstudio, notebook, rstudio]
    repos: [org/b, org/a]
    limits: {memory: 1.5Gi, cpus: 0.5, pids: 512}
    idle_timeout: 2h
    max_age: 0
    github_token: true
  empty:
`
	p, err := Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if want := []string{"monika", "zoë"}; !reflect.DeepEqual(p.Admins, want) {
		t.Errorf("Admins = %q, want %q", p.Admins, want)
	}
	if p.Accounts["alice"] != testHash || len(p.Accounts) != 1 {
		t.Errorf("Accounts = %v", p.Accounts)
	}
	if p.APITokens["ci"] != testTokenHash1 {
		t.Errorf("APITokens = %v", p.APITokens)
	}
	nb := p.Images["notebook"]
	wantNB := &Image{Key: "notebook", Image: "hubgate/jupyterlab:latest", Port: 8888, Home: "/home/hubgate", URL: "/"}
	if !reflect.DeepEqual(nb, wantNB) {
		t.Errorf("notebook = %+v, want %+v", nb, wantNB)
	}
	rs := p.Images["rstudio"]
	wantRS := &Image{Key: "rstudio", Image: "hubgate/rstudio:latest", Port: 8787, Description: "RStudio",
		Command: []string{"/init", "--port", "8787", "true"},
		Env:     map[string]string{"TZ": "Europe/London", "DEBUG": "1", "EMPTY": ""},
		Home:    "/home/rstudio", URL: "/?x=1"}
	if !reflect.DeepEqual(rs, wantRS) {
		t.Errorf("rstudio = %+v, want %+v", rs, wantRS)
	}
	r := p.Teams["research"]
	wantR := &Team{Name: "research",
		Members:     []string{"alice", "bob"},
		Groups:      []string{"github:org/team", "oidc:Researchers"},
		Images:      []string{"notebook", "rstudio"},
		Repos:       []string{"org/a", "org/b"},
		Limits:      Limits{Memory: 1536 << 20, CPUs: 0.5, Pids: 512},
		IdleTimeout: 2 * time.Hour,
		GitHubToken: true,
	}
	if !reflect.DeepEqual(r, wantR) {
		t.Errorf("research = %+v, want %+v", r, wantR)
	}
	if e := p.Teams["empty"]; e == nil || e.Name != "empty" {
		t.Errorf("empty team = %+v", e)
	}
	if got, want := p.Summary(), "2 teams, 2 images, 2 members, 2 admins, 1 local account from policy.yaml"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
}

func TestParseMergeKeys(t *testing.T) {
	src := `images:
  base: &base {image: hubgate/base:1, port: 80, description: Base}
  other:
    <<: *base
    port: 81
teams:
  a: &team
    images: [base]
    limits: {memory: 1GiB}
  b:
    <<: [*team]
    members: [carol]
`
	p, err := Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if o := p.Images["other"]; o.Image != "hubgate/base:1" || o.Port != 81 || o.Description != "Base" || o.Key != "other" {
		t.Errorf("other = %+v", o)
	}
	if b := p.Teams["b"]; b.Limits.Memory != 1<<30 || !reflect.DeepEqual(b.Images, []string{"base"}) || !reflect.DeepEqual(b.Members, []string{"carol"}) {
		t.Errorf("b = %+v", b)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, src := range []string{"", "\n", "# nothing yet\n", "---\n", "admins:\nteams:\nimages:\n", "teams: {}\n"} {
		p, err := Parse("policy.yaml", []byte(src))
		if err != nil {
			t.Errorf("Parse(%q): %v", src, err)
			continue
		}
		if p.Known("alice", nil) || p.Allowed("alice", nil, "notebook") {
			t.Errorf("Parse(%q): empty policy lets alice in", src)
		}
		if got, want := p.Summary(), "0 teams, 0 images, 0 members, 0 admins, 0 local accounts from policy.yaml"; got != want {
			t.Errorf("Summary() = %q, want %q", got, want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "2048", want: 2048},
		{in: "0", want: 0},
		{in: "512MiB", want: 512 << 20},
		{in: "4GiB", want: 4 << 30},
		{in: "4gib", want: 4 << 30},
		{in: "1Gi", want: 1 << 30},
		{in: "1G", want: 1e9},
		{in: "1GB", want: 1e9},
		{in: "100M", want: 100e6},
		{in: "64Ki", want: 64 << 10},
		{in: "1.5GiB", want: 1536 << 20},
		{in: "1 TiB", want: 1 << 40},
		{in: "100B", want: 100},
		{in: "", bad: true},
		{in: "GiB", bad: true},
		{in: "-1G", bad: true},
		{in: "1PB", bad: true},
		{in: "1.2.3G", bad: true},
		{in: "99999999999TiB", bad: true},
		{in: "99999999999999999999", bad: true},
	}
	for _, tt := range tests {
		got, err := parseBytes(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("parseBytes(%q) = %d, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct{ in, want string }{
		{"prot", "port"},
		{"imgae", "image"},
		{"Image", "image"},
		{"member", "members"},
		{"idle-timeout", "idle_timeout"},
		{"colour", ""},
		{"x", ""},
	}
	fields := append(append([]string{}, imageFields...), teamFields...)
	for _, tt := range tests {
		if got := suggest(tt.in, fields); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{"a.yaml", 3, "teams.x", "bad"}, "a.yaml:3: teams.x: bad"},
		{Problem{"a.yaml", 0, "", "bad"}, "a.yaml: bad"},
		{Problem{"a.yaml", 7, "", "bad"}, "a.yaml:7: bad"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
