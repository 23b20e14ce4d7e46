// Package username holds hubgate's one rule for user names: which names
// exist, and the canonical form every part of the gateway (the policy,
// logins from every identity provider, session cookies, /user/{name}/
// paths, container labels and names) uses for them.
//
// The rule keeps look-alikes from coexisting or posing as one another. A
// name is refused, not folded, when its canonical form would hide a
// difference a person cannot see: a Kelvin sign "K" that lower-cases to
// "k", a dotted capital "İ" that lower-cases to "i", full-width letters, a
// zero-width or bidi-control character, letters of look-alike scripts
// mixed in one name ("аdmin" with a Cyrillic "а"), or a combining mark on
// a Latin letter. Folding them would let a second account at an identity
// provider log in as the first; keeping them distinct would show two
// users called "admin" on the admin page.
//
// The package has no dependency on the rest of hubgate, so identity
// providers, the policy and the spawner can all use it.
package username

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
	"golang.org/x/text/unicode/norm"
)

// MaxRunes is the longest user name, in characters.
const MaxRunes = 64

// Canonical returns the canonical form of raw, a user name as it is
// written in the policy, typed at a login form or given by an identity
// provider, or an error saying why it cannot be a user name. The canonical
// form is raw lower-cased; Canonical refuses raw instead when that would
// not be a faithful, reversible mapping. Canonical is idempotent: a name it
// returns maps to itself. It does not trim white space (a name with a space
// is refused): a login form that wants to forgive a stray space trims
// ASCII spaces before calling it.
func Canonical(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("user name \"\": empty")
	}
	if !utf8.ValidString(raw) {
		return "", fmt.Errorf("user name %q: not valid UTF-8", raw)
	}
	if n := utf8.RuneCountInString(raw); n > MaxRunes {
		return "", fmt.Errorf("user name %q: too long: %d characters, at most %d", raw, n, MaxRunes)
	}
	if raw == "." || raw == ".." {
		return "", fmt.Errorf("user name %q: not allowed", raw)
	}
	if plainASCII(raw) {
		return strings.ToLower(raw), nil
	}
	return canonicalUnicode(raw)
}

// plainASCII reports whether s is made of printable ASCII other than the
// path separators, which the rule maps by lower-casing alone (the common
// case, and so the fast one; FuzzCanonical checks both paths agree).
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '/' || c == '\\' {
			return false
		}
	}
	return true
}

// canonicalUnicode is Canonical for names that are not plainASCII.
func canonicalUnicode(raw string) (string, error) {
	for _, r := range raw {
		if why := forbidden(r); why != "" {
			return "", fmt.Errorf("user name %q: contains %s, %s", raw, runeName(r), why)
		}
	}
	if err := normalForm(raw); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, r := range raw {
		l := unicode.ToLower(r)
		if l != r && unicode.ToUpper(l) != r {
			return "", fmt.Errorf("user name %q: contains %s, which lower-cases to %q, the lower case of another letter; write the name in lower case", raw, runeName(r), string(l))
		}
		b.WriteRune(l)
	}
	name := b.String()
	if err := normalForm(name); err != nil {
		return "", err
	}
	enforced, err := precis.UsernameCaseMapped.String(name)
	if err != nil {
		return "", fmt.Errorf("user name %q: not allowed by the username rules of RFC 8265: %v", raw, err)
	}
	if enforced != name {
		return "", fmt.Errorf("user name %q: has no single lower-case form (%q or %q); write it in lower case", raw, name, enforced)
	}
	if err := marksAndScripts(raw, name); err != nil {
		return "", err
	}
	return name, nil
}

// Check reports whether name is a user name in canonical form.
func Check(name string) error {
	c, err := Canonical(name)
	if err != nil {
		return err
	}
	if c != name {
		return fmt.Errorf("user name %q: not in canonical form (%q)", name, c)
	}
	return nil
}

// forbidden says why r may not appear in a user name, or "".
func forbidden(r rune) string {
	switch {
	case r == '/' || r == '\\':
		return "a path separator"
	case unicode.IsSpace(r):
		return "white space"
	case unicode.IsControl(r):
		return "a control character"
	case unicode.Is(unicode.Cf, r), unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r),
		unicode.Is(unicode.Variation_Selector, r):
		return "an invisible character (zero-width, bidi control or other default-ignorable code point)"
	case unicode.Is(unicode.Noncharacter_Code_Point, r), !unicode.IsGraphic(r):
		return "an unassigned, private-use or non-character code point"
	}
	// By its lower case: the name is kept lower-cased, so an upper-case
	// letter whose lower case is a look-alike ("Ʀ" → "ʀ") is one too.
	if like, ok := latinLookalikes[unicode.ToLower(r)]; ok {
		return fmt.Sprintf("a letter that looks like %q", like)
	}
	return ""
}

// latinLookalikes are Latin letters that NFKC keeps but that look like an
// ASCII letter (or punctuation), so "admın" would pass for "admin". Other
// scripts' look-alikes are caught by the mixed-script check.
var latinLookalikes = map[rune]string{
	'ı': "i", 'ȷ': "j", 'ɑ': "a", 'ɡ': "g", 'ɩ': "i", 'ɪ': "i", 'ʟ': "l", 'ɴ': "n",
	'ʀ': "r", 'ʏ': "y", 'ᴀ': "a", 'ᴄ': "c", 'ᴅ': "d", 'ᴇ': "e", 'ᴊ': "j", 'ᴋ': "k",
	'ᴍ': "m", 'ᴏ': "o", 'ᴘ': "p", 'ᴛ': "t", 'ᴜ': "u", 'ᴠ': "v", 'ᴡ': "w", 'ᴢ': "z",
	'ꜱ': "s", 'ǀ': "l", 'ǃ': "!", 'ʼ': "'", 'ʹ': "'", 'ˈ': "'", 'ː': ":",
}

// normalForm refuses s unless it is in Unicode normal form NFKC, naming the
// first character that compatibility mapping or composition changes.
func normalForm(s string) error {
	if norm.NFKC.IsNormalString(s) {
		return nil
	}
	for _, r := range s {
		if m := norm.NFKC.String(string(r)); m != string(r) {
			return fmt.Errorf("user name %q: contains %s, a variant of %q (compatibility or width form); write %q instead", s, runeName(r), m, m)
		}
	}
	return fmt.Errorf("user name %q: not in Unicode normal form (a letter and a separate accent); write it as %q", s, norm.NFKC.String(s))
}

// Scripts whose letters look like Latin ones, and the combinations of
// scripts a name may mix (Unicode TS 39's "highly restrictive" level).
var (
	confusableBases = []*unicode.RangeTable{unicode.Latin, unicode.Greek, unicode.Cyrillic, unicode.Common}
	scriptSets      = [][]string{
		{"Latin", "Han", "Hiragana", "Katakana"},
		{"Latin", "Han", "Bopomofo"},
		{"Latin", "Han", "Hangul"},
	}
)

// marksAndScripts refuses combining marks on Latin, Greek and Cyrillic
// letters (after NFC these only remain where they make a look-alike, such
// as "i" and U+0307, the lower case of "İ") and letters or digits of
// several scripts outside scriptSets.
func marksAndScripts(raw, name string) error {
	var scripts []string
	var prev rune
	for _, r := range name {
		if unicode.In(r, unicode.Mn, unicode.Me) {
			for _, t := range confusableBases {
				if unicode.Is(t, prev) {
					return fmt.Errorf("user name %q: contains %s on %q: it looks like a letter of its own; use the precomposed letter or leave the mark out", raw, runeName(r), string(prev))
				}
			}
			continue
		}
		prev = r
		if r < utf8.RuneSelf {
			if unicode.IsLetter(r) && !contains(scripts, "Latin") {
				scripts = append(scripts, "Latin")
			}
			continue
		}
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			continue
		}
		if s := scriptOf(r); s != "" && !contains(scripts, s) {
			scripts = append(scripts, s)
		}
	}
	if len(scripts) <= 1 {
		return nil
	}
	for _, set := range scriptSets {
		if subset(scripts, set) {
			return nil
		}
	}
	return fmt.Errorf("user name %q: mixes letters of the %s scripts: names mixing scripts can pose as others (\"аdmin\" with a Cyrillic \"а\")", raw, strings.Join(scripts, " and "))
}

// scriptOf returns the name of the script of letter r, or "" for the
// Common and Inherited scripts.
func scriptOf(r rune) string {
	for name, t := range unicode.Scripts {
		if name != "Common" && name != "Inherited" && unicode.Is(t, r) {
			return name
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !contains(b, x) {
			return false
		}
	}
	return true
}

// runeName names r for messages: U+212A ("K").
func runeName(r rune) string {
	if unicode.IsGraphic(r) && !unicode.Is(unicode.Mn, r) {
		return fmt.Sprintf("U+%04X (%q)", r, string(r))
	}
	return fmt.Sprintf("U+%04X", r)
}
