package spawner

import (
	"strings"
	"testing"
)

func TestEscapeName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"alice", "alice"},
		{"alice-x", "alice_2dx"},
		{"alice_2dx", "alice_5f2dx"},
		{"Alice", "_41lice"},
		{"..", "_2e_2e"},
		{"a/b", "a_2fb"},
		{"аlice", "_d0_b0lice"}, // Cyrillic а
		{"😀", "_f0_9f_98_80"},
		{"", ""},
	} {
		if got := EscapeName(tc.in); got != tc.want {
			t.Errorf("EscapeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// names is a table of user names that look alike or are awkward.
var names = []string{
	"alice", "alice-x", "alice_2dx", "alice_x", "alicex", "Alice", "ALICE",
	"..", ".", "a/b", "a_2fb", "аlice", "😀", "😀x", "x😀", "home", "home-alice",
	"a-b", "a_b", "a.b", "a", "b", "ab", "_", "-", "_2d", "_5f",
}

func TestEscapeNameInjective(t *testing.T) {
	seen := map[string]string{}
	for _, n := range names {
		e := EscapeName(n)
		if prev, ok := seen[e]; ok {
			t.Errorf("EscapeName(%q) = EscapeName(%q) = %q", n, prev, e)
		}
		seen[e] = n
		if strings.ContainsAny(e, "-ABCDEFGHIJKLMNOPQRSTUVWXYZ./") {
			t.Errorf("EscapeName(%q) = %q contains a forbidden byte", n, e)
		}
		back, ok := UnescapeName(e)
		if !ok || back != n {
			t.Errorf("UnescapeName(%q) = %q, %v; want %q", e, back, ok, n)
		}
	}
}

func TestContainerNameInjective(t *testing.T) {
	servers := []string{"notebook", "note-book", "notebook-x", "x", "home", "a-b"}
	containers := map[string][2]string{}
	volumes := map[string]string{}
	for _, u := range names {
		v := VolumeName("hubgate", u)
		if prev, ok := volumes[v]; ok {
			t.Errorf("VolumeName(%q) = VolumeName(%q) = %q", u, prev, v)
		}
		volumes[v] = u
		for _, s := range servers {
			c := ContainerName("hubgate", u, s)
			if prev, ok := containers[c]; ok {
				t.Errorf("ContainerName(%q, %q) = ContainerName(%q, %q) = %q", u, s, prev[0], prev[1], c)
			}
			containers[c] = [2]string{u, s}
			if n := strings.Count(c, "-"); n != 2 {
				t.Errorf("ContainerName(%q, %q) = %q has %d dashes, want 2", u, s, c, n)
			}
		}
	}
	if got := ContainerName("hubgate", "alice", "notebook"); got != "hubgate-alice-notebook" {
		t.Errorf("ContainerName = %q", got)
	}
	if got := VolumeName("hubgate", "Alice"); got != "hubgate-home-_41lice" {
		t.Errorf("VolumeName = %q", got)
	}
}

func TestUnescapeNameRejects(t *testing.T) {
	for _, s := range []string{"A", "-", "_", "_4", "_4G", "_61", "_41_", "a.b"} {
		if got, ok := UnescapeName(s); ok {
			t.Errorf("UnescapeName(%q) = %q, true; want false", s, got)
		}
	}
}

func FuzzEscapeName(f *testing.F) {
	for _, n := range names {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := EscapeName(s)
		back, ok := UnescapeName(e)
		if !ok || back != s {
			t.Fatalf("round trip of %q: %q, %v", s, back, ok)
		}
	})
}

func TestSpecValidate(t *testing.T) {
	good := Spec{User: "alice.ß", Server: "notebook-2", Image: "img", Port: 8888, HomeMount: "/home/jovyan", Env: map[string]string{"A": "b"}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	for name, mut := range map[string]func(*Spec){
		"empty user":     func(s *Spec) { s.User = "" },
		"slash in user":  func(s *Spec) { s.User = "a/b" },
		"space in user":  func(s *Spec) { s.User = "a b" },
		"bad utf8 user":  func(s *Spec) { s.User = "a\xff" },
		"upper user":     func(s *Spec) { s.User = "Alice" },
		"kelvin user":    func(s *Spec) { s.User = "\u212aelvin" },
		"invisible user": func(s *Spec) { s.User = "admin\u200b" },
		"bad capability": func(s *Spec) { s.CapAdd = []string{"net_raw"} },
		"all caps back":  func(s *Spec) { s.CapAdd = []string{"ALL"} },
		"upper server":   func(s *Spec) { s.Server = "Notebook" },
		"empty server":   func(s *Spec) { s.Server = "" },
		"no image":       func(s *Spec) { s.Image = "" },
		"port 0":         func(s *Spec) { s.Port = 0 },
		"port too big":   func(s *Spec) { s.Port = 70000 },
		"relative home":  func(s *Spec) { s.HomeMount = "home" },
		"root home":      func(s *Spec) { s.HomeMount = "/" },
		"colon in home":  func(s *Spec) { s.HomeMount = "/a:b" },
		"bad env name":   func(s *Spec) { s.Env = map[string]string{"A=B": "c"} },
		"negative limit": func(s *Spec) { s.Limits.Pids = -1 },
	} {
		s := good
		mut(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
