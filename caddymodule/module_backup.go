package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/caddymodule/backup"
)

// backupManagers holds each deployment's backup manager across reloads,
// keyed by the deployment's name only: its schedule and its view of the
// backup state outlive a reload, and the new config's settings are
// applied with Configure.
var backupManagers = caddy.NewUsagePool()

// provisionBackup finds or makes the deployment's backup manager and
// gives it this config, when the backup block is set.
func (h *Handler) provisionBackup(ctx caddy.Context, prefix string, audit *zap.Logger, revokers []backup.Revoker) error {
	if h.Backup == nil {
		if pol := h.watcher.Current(); pol != nil && pol.Retention > 0 {
			h.logger.Warn("the policy sets a retention but there is no backup block: no home is ever deleted without a verified final backup, so none is deleted")
		}
		return nil
	}
	val, _, err := backupManagers.LoadOrNew(h.Name, func() (caddy.Destructor, error) {
		return backup.New(h.Name, prefix), nil
	})
	if err != nil {
		return fmt.Errorf("hubgate: backup manager: %w", err)
	}
	m := val.(*backup.Manager)
	h.backups = m
	rt, w := h.runtime, h.watcher
	return m.Configure(h.Backup.config(), backup.Deps{
		Spawner:   rt.Spawner(),
		Stop:      rt.Stop,
		CloseUser: rt.Streams().CloseUser,
		Policy:    w.Current,
		PolicyOK:  func() bool { return w.LastResult().OK },
		Storage:   ctx.Storage(),
		Logger:    h.logger.Named("backup"),
		Audit:     audit,
		Revokers:  revokers,
	})
}
