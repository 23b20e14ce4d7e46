package serverhost

import (
	"strings"
	"testing"
)

func TestParseRefuses(t *testing.T) {
	for _, tmpl := range []string{
		"",
		"{user}.hub.example.org",
		"{server}{user}.hub.example.org",
		"{server}x{user}.hub.example.org",
		"{server}.{user}.hub.example.org",
		"{server}--{user}",
		"{server}--{user}.",
		"{server}--{user}--{user}.hub.example.org",
		"{server}--{user}.Hub.example.org",
		"{server}--{user}.hub..example.org",
		"{server}--{user}.hub_x.example.org",
	} {
		if _, err := Parse(tmpl); err == nil {
			t.Errorf("Parse(%q) accepted", tmpl)
		}
	}
}

func TestHostRoundTrip(t *testing.T) {
	for _, tmpl := range []string{"{server}--{user}.hub.example.org", "u-{user}-s-{server}.apps.example.org", "{user}-{server}.hub.localhost"} {
		tp, err := Parse(tmpl)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tmpl, err)
		}
		seen := map[string]string{}
		for _, user := range []string{"alice", "bob", "a-b", "a", "ab", "zoe", "Ünïcode", "x.y", "a--b"} {
			for _, server := range []string{"notebook", "r-studio", "b", "nb"} {
				h, err := tp.Host(user, server)
				if err != nil {
					t.Fatalf("Host(%q, %q): %v", user, server, err)
				}
				if prev, dup := seen[h]; dup {
					t.Fatalf("%s: %q and %q/%q share host %s", tmpl, prev, user, server, h)
				}
				seen[h] = user + "/" + server
				for _, asked := range []string{h, strings.ToUpper(h), h + ":8443", h + "."} {
					u, s, ok := tp.Match(asked)
					if !ok || u != user || s != server {
						t.Fatalf("%s: Match(%q) = %q, %q, %v; want %q, %q", tmpl, asked, u, s, ok, user, server)
					}
				}
			}
		}
	}
}

func TestMatchOthers(t *testing.T) {
	tp, err := Parse("{server}--{user}.hub.example.org")
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{
		"hub.example.org", "example.org", "notebook--alice.hub.example.org.evil", "x.notebook--alice.hub.example.org",
		"notebook-alice.hub.example.org", "--alice.hub.example.org", "notebook--.hub.example.org",
		"note-book--alice.hub.example.org", "notebook--alice--x.hub.example.org",
		"notebook--alicez.hub.example.org",
	} {
		if u, s, ok := tp.Match(host); ok {
			t.Errorf("Match(%q) = %q, %q; want no match", host, u, s)
		}
	}
}

func TestHostTooLong(t *testing.T) {
	tp, _ := Parse("{server}--{user}.hub.example.org")
	if _, err := tp.Host(strings.Repeat("a", 60), "notebook"); err == nil {
		t.Fatal("a 70-character label was accepted")
	}
}
