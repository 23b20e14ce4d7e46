package caddymodule

import (
	"context"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/web"
)

// closeRevokedTokenStreams checks, every ttl while the config is loaded,
// the personal tokens that hold websockets open here, and closes those of
// tokens revoked (on any instance) or expired since: a revocation ends a
// token's websockets everywhere within twice the tokens' cache TTL.
func closeRevokedTokenStreams(ctx caddy.Context, site *web.Site, ttl time.Duration, audit *zap.Logger) {
	t := time.NewTicker(ttl)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, ttl)
		if n := site.CloseRevokedTokenStreams(cctx); n > 0 {
			audit.Info("revoked tokens' streams closed", zap.Int("streams_closed", n))
		}
		cancel()
	}
}
