package username

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestCanonicalAccepts(t *testing.T) {
	for raw, want := range map[string]string{
		"alice":                       "alice",
		"Alice":                       "alice",
		"ZOË":                         "zoë",
		"zoë":                         "zoë",
		"a.b-c_d":                     "a.b-c_d",
		"alice@example.org":           "alice@example.org",
		"Müller":                      "müller",
		"ΔΗΜΗΤΡΗΣ":                    "δημητρησ",
		"иван":                        "иван",
		"山田太郎":                        "山田太郎",
		"やまだtaro":                     "やまだtaro",
		"김철수":                         "김철수",
		"user123":                     "user123",
		"monika":                      "monika",
		strings.Repeat("a", MaxRunes): strings.Repeat("a", MaxRunes),
	} {
		got, err := Canonical(raw)
		if err != nil || got != want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", raw, got, err, want)
			continue
		}
		if again, err := Canonical(got); again != got || err != nil {
			t.Errorf("Canonical(%q) = %q, %v; not idempotent", got, again, err)
		}
		if err := Check(got); err != nil {
			t.Errorf("Check(%q) = %v", got, err)
		}
	}
	if err := Check("Alice"); err == nil {
		t.Error("Check(Alice) accepted a name that is not canonical")
	}
}

// TestCanonicalRefusesLookalikes covers the outside review's M2 names and
// their cousins: each would either fold into another user's name or
// coexist with it looking the same.
func TestCanonicalRefusesLookalikes(t *testing.T) {
	for raw, want := range map[string]string{
		"\u212Aelvin":           "U+212A",           // Kelvin sign: lower-cases to "k"
		"\u0130nci":             "U+0130",           // dotted capital I: lower-cases to "i"
		"ａｄｍｉｎ":                 "U+FF41",           // full-width letters
		"admin\u200b":           "invisible",        // trailing zero-width space
		"ad\u200dmin":           "invisible",        // zero-width joiner
		"\u202eadmin":           "invisible",        // right-to-left override
		"admin\u2066":           "invisible",        // bidi isolate
		"ad\u00admin":           "invisible",        // soft hyphen
		"admin\ufe0f":           "invisible",        // variation selector
		"\u3164admin":           "invisible",        // Hangul filler
		"\u0430dmin":            "mixes letters",    // Cyrillic а
		"p\u0430yp\u0430l":      "mixes letters",    // Cyrillic а twice
		"adm\u03b9n":            "mixes letters",    // Greek iota
		"admin\u0966":           "mixes letters",    // Devanagari digit
		"admin\u0660":           "RFC 8265",         // Arabic-Indic digit (fails the bidi rule)
		"i\u0307":               "on \"i\"",         // what İ lower-cases to in full
		"e\u0301":               "normal form",      // decomposed é
		"\u01c5ungla":           "U+01C5",           // title-case digraph
		"adm\u0131n":            "looks like \"i\"", // dotless i
		"o\u02bcbrien":          "looks like \"'\"", // modifier apostrophe
		"\u1d00dmin":            "looks like \"a\"", // small capital A
		"\u01a6oot":             "looks like \"r\"", // yr, whose lower case is small capital R
		"\ua7aenternal":         "looks like \"i\"", // capital small capital I
		"ma\u017fs":             "U+017F",           // long s
		"\ufb01le":              "U+FB01",           // fi ligature
		"x\u00b2":               "U+00B2",           // superscript two
		"a b":                   "white space",      // space
		"admin\u00a0":           "white space",      // no-break space
		" admin":                "white space",      // not trimmed
		"a/b":                   "path separator",   // a path
		"a\\b":                  "path separator",   // a Windows path
		"a\x00b":                "control",          // NUL
		"\U0001F600":            "RFC 8265",         // emoji
		"a\ue000":               "private-use",      // private use
		".":                     "not allowed",      // path dot
		"..":                    "not allowed",      // path dots
		"":                      "empty",            // nothing
		"\xff":                  "UTF-8",            // not UTF-8
		strings.Repeat("a", 65): "too long",         // too long
	} {
		got, err := Canonical(raw)
		if err == nil {
			t.Errorf("Canonical(%q) = %q; want it refused (%s)", raw, got, want)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Canonical(%q): %v; want a message containing %q", raw, err, want)
		}
	}
}

// FuzzCanonical: the rule is idempotent, accepted names are their own
// canonical form, never contain an invisible, space or control
// character, are valid UTF-8 of 1 to MaxRunes characters, and lower case.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"alice", "Alice", "ZOË", "\u212Aelvin", "\u0130nci", "ａｄｍｉｎ", "admin\u200b",
		"\u0430dmin", "i\u0307", "e\u0301", "山田太郎", "ΟΔΟΣ", "ς", "ǅ", "\U0001F600", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := Canonical(raw)
		if err != nil {
			if c != "" {
				t.Fatalf("Canonical(%q) = %q with error %v", raw, c, err)
			}
			return
		}
		if plainASCII(raw) {
			if slow, err := canonicalUnicode(raw); slow != c || err != nil {
				t.Fatalf("Canonical(%q): fast path %q, full rule %q, %v", raw, c, slow, err)
			}
		}
		again, err := Canonical(c)
		if err != nil || again != c {
			t.Fatalf("Canonical(%q) = %q, but Canonical(%q) = %q, %v", raw, c, c, again, err)
		}
		if err := Check(c); err != nil {
			t.Fatalf("Check(%q) = %v", c, err)
		}
		if n := utf8.RuneCountInString(c); !utf8.ValidString(c) || n < 1 || n > MaxRunes {
			t.Fatalf("accepted %q: %d runes", c, n)
		}
		for _, r := range c {
			if forbidden(r) != "" || unicode.IsUpper(r) || unicode.Is(unicode.Cf, r) ||
				unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) {
				t.Fatalf("accepted %q contains %U", c, r)
			}
		}
		if strings.ToLower(raw) != c {
			t.Fatalf("Canonical(%q) = %q, not its lower case %q", raw, c, strings.ToLower(raw))
		}
	})
}

// TestASCIIFastPath: for every name of one or two printable ASCII
// characters, the fast path gives what the full rule gives.
func TestASCIIFastPath(t *testing.T) {
	for a := rune(0x21); a < 0x7f; a++ {
		for b := rune(0x20); b < 0x7f; b++ {
			s := string(a)
			if b > 0x20 {
				s += string(b)
			}
			if !plainASCII(s) || s == "." || s == ".." {
				continue
			}
			fast, _ := Canonical(s)
			slow, err := canonicalUnicode(s)
			if fast != slow || err != nil {
				t.Fatalf("%q: fast path %q, full rule %q, %v", s, fast, slow, err)
			}
		}
	}
}
