package login

import (
	"net/url"
	"strings"
	"unicode"
)

// SafeNext returns target if it is a path on our own origin, and "/"
// otherwise. It refuses scheme-relative URLs ("//evil"), backslash tricks
// ("/\evil"), absolute URLs, encoded slashes at the start, and any
// whitespace or control character, decoded or not.
func SafeNext(target string) string {
	if target == "" || len(target) > 2048 || target[0] != '/' {
		return "/"
	}
	decoded, err := url.PathUnescape(target)
	if err != nil {
		return "/"
	}
	for _, s := range []string{target, decoded} {
		if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
			return "/"
		}
		for _, r := range s {
			if unicode.IsControl(r) || unicode.IsSpace(r) || r == '\\' {
				return "/"
			}
		}
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	if !strings.HasPrefix(u.Path, "/") {
		return "/"
	}
	return u.String()
}
