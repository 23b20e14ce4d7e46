package hub

import (
	"bytes"
	"net/http"
	"strings"
)

// identityHeader reports request headers that claim an identity; only the
// gateway may set those. The name is compared case-insensitively and with
// underscores read as dashes, since some servers treat them alike. It
// allocates nothing: it runs for every header of every proxied request.
func identityHeader(name string) bool {
	var buf [64]byte
	if len(name) > len(buf) {
		return identityHeaderSlow(name)
	}
	n := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		n[i] = c
	}
	return isIdentityName(n)
}

func identityHeaderSlow(name string) bool {
	return isIdentityName([]byte(strings.ToLower(strings.ReplaceAll(name, "_", "-"))))
}

func isIdentityName(n []byte) bool {
	switch string(n) { // no allocation: the compiler compares in place
	case "authorization", "proxy-authorization", "x-forwarded-user", "x-forwarded-email",
		"x-forwarded-groups", "x-forwarded-preferred-username", "x-forwarded-access-token",
		"x-user", "x-email", "x-webauth-user", "x-remote-user", "x-remote-group", "x-remote-groups":
		return true
	}
	return bytes.HasPrefix(n, []byte("x-hubgate-")) || bytes.HasPrefix(n, []byte("remote-")) ||
		bytes.HasPrefix(n, []byte("x-auth-request-")) || bytes.HasPrefix(n, []byte("x-jupyterhub-"))
}

// StripIdentityHeaders removes every identity header a client sent.
func StripIdentityHeaders(hdr http.Header) {
	for k := range hdr {
		if identityHeader(k) {
			delete(hdr, k)
		}
	}
}
