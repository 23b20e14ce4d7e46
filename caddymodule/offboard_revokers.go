package caddymodule

import (
	"context"
	"fmt"

	"github.com/hubgate/hubgate/caddymodule/backup"
	"github.com/hubgate/hubgate/caddymodule/shares"
	"github.com/hubgate/hubgate/caddymodule/tokens"
)

// tokenRevoker revokes an offboarded user's personal API tokens, so the
// name given again to someone else later carries none of them.
type tokenRevoker struct{ store *tokens.Store }

func (tokenRevoker) Name() string { return "tokens" }

func (t tokenRevoker) RevokeUser(ctx context.Context, user string) (int, error) {
	recs, err := t.store.List(ctx, user)
	if err != nil {
		return 0, fmt.Errorf("list tokens of %s: %w", user, err)
	}
	n := 0
	for _, r := range recs {
		if _, err := t.store.Revoke(ctx, user, r.ID); err != nil {
			return n, fmt.Errorf("revoke token %s of %s: %w", r.ID, user, err)
		}
		n++
	}
	return n, nil
}

// shareRevoker revokes the shares and admin access grants of an offboarded
// user's servers, and removes them from others' shares.
type shareRevoker struct{ store *shares.Store }

func (shareRevoker) Name() string { return "shares" }

func (s shareRevoker) RevokeUser(ctx context.Context, user string) (int, error) {
	n := 0
	for _, g := range s.store.All() {
		if g.Owner != user && !(len(g.Users) == 1 && g.Users[0] == user && len(g.Teams) == 0) {
			continue
		}
		if _, err := s.store.Revoke(ctx, g.ID, func(shares.Grant) bool { return true }); err != nil {
			return n, fmt.Errorf("revoke grant %s of %s: %w", g.ID, user, err)
		}
		n++
	}
	return n, nil
}

// offboardRevokers are what offboarding revokes besides sessions.
func (h *Handler) offboardRevokers(tok *tokens.Store) []backup.Revoker {
	rs := []backup.Revoker{tokenRevoker{tok}}
	if h.hosts != nil && h.hosts.store != nil {
		rs = append(rs, shareRevoker{h.hosts.store})
	}
	return rs
}
