package egress

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// Deriver derives keyed MACs; *session.Codec is one. Every gateway of a
// deployment derives the same credential for a container.
type Deriver interface {
	MAC(parts ...string) []byte
}

// credentialLabel separates the egress credential from every other value
// derived from the deployment's key (the container token, CSRF tokens):
// knowing one tells nothing of the others.
const credentialLabel = "hubgate egress credential v1"

// Credential returns the proxy user name and password of the container of
// user's server with the given nonce. The name carries the user, server
// and nonce (base64url, so any client puts it in a proxy URL as it is);
// the password is a MAC of them. It grants egress through the proxy,
// within the user's policy, from that container, and nothing else.
func Credential(d Deriver, user, server, nonce string) (name, password string) {
	name = base64.RawURLEncoding.EncodeToString([]byte(user + "\x00" + server + "\x00" + nonce))
	return name, derivePassword(d, user, server, nonce)
}

func derivePassword(d Deriver, user, server, nonce string) string {
	return hex.EncodeToString(d.MAC(credentialLabel, user, server, nonce)[:20])
}

// Claim is who a valid credential says is calling.
type Claim struct {
	User, Server, Nonce string
}

// Verify checks a proxy user name and password (in constant time for the
// password) and returns whose they are.
func Verify(d Deriver, name, password string) (Claim, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(name)
	if err != nil {
		return Claim{}, false
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return Claim{}, false
	}
	want := derivePassword(d, parts[0], parts[1], parts[2])
	if subtle.ConstantTimeCompare([]byte(password), []byte(want)) != 1 {
		return Claim{}, false
	}
	return Claim{User: parts[0], Server: parts[1], Nonce: parts[2]}, true
}
