package assertion

import (
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/hubgate/hubgate/caddymodule/session"
)

// Access says on what footing a visitor who is not the server's owner is
// there: a share's guest, or an admin with an access grant.
type Access struct {
	// Owner is whose server it is.
	Owner string `json:"owner"`
	// Kind is "guest" or "admin".
	Kind string `json:"kind"`
	// Grant is the share's or access grant's ID.
	Grant string `json:"grant"`
	// Reason is an admin grant's stated reason.
	Reason string `json:"reason,omitempty"`
	// Until is when the grant ends (Unix seconds; 0: no end).
	Until int64 `json:"until,omitempty"`
}

// accessClaims are Claims with the "access" claim.
type accessClaims struct {
	Claims
	Access *Access `json:"access,omitempty"`
}

// SignAccess is Sign for a visitor who is not the owner: sub stays the
// visitor, and the "access" claim names the owner and the grant, so the
// app knows who is really there and on whose behalf. An owner's own
// visit (acc nil) is signed exactly as Sign does.
func (a *Signer) SignAccess(iss string, s *session.Session, aud string, acc *Access) (string, error) {
	if acc == nil {
		return a.Sign(iss, s, aud)
	}
	groups := s.Groups
	if groups == nil {
		groups = []string{}
	}
	ck := strings.Join(append([]string{iss, s.User, s.Name, s.Email, aud, acc.Owner, acc.Kind, acc.Grant, acc.Reason, strconv.FormatInt(acc.Until, 10)}, groups...), "\x00")
	if tok, ok := a.cache.Get(ck); ok {
		return tok, nil
	}
	now := time.Now()
	exp := now.Add(a.ttl)
	if acc.Until != 0 && time.Unix(acc.Until, 0).Before(exp) {
		exp = time.Unix(acc.Until, 0)
	}
	c := accessClaims{
		Claims: Claims{
			Claims: jwt.Claims{
				Issuer:   iss,
				Subject:  s.User,
				Audience: jwt.Audience{aud},
				IssuedAt: jwt.NewNumericDate(now),
				Expiry:   jwt.NewNumericDate(exp),
			},
			Name:   s.Name,
			Email:  s.Email,
			Groups: groups,
		},
		Access: acc,
	}
	tok, err := jwt.Signed(a.signer).Claims(c).Serialize()
	if err != nil {
		return "", err
	}
	a.cache.Add(ck, tok)
	return tok, nil
}
