package caddymodule

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	auditlog "github.com/hubgate/hubgate/caddymodule/audit"
	"github.com/hubgate/hubgate/caddymodule/history"
)

// historySeedBytes is how much of the audit log's end a new index reads
// back at start-up.
const historySeedBytes = 64 << 20

// histories holds each deployment's per-user access history across
// config reloads, keyed by the deployment's name: a reload keeps what the
// users' history pages show.
var histories = caddy.NewUsagePool()

// historyIndex releases nothing: it is memory only.
type historyIndex struct{ *history.Index }

// Destruct implements caddy.Destructor.
func (historyIndex) Destruct() error { return nil }

// loadHistory finds or makes the deployment's history index (read back
// from the end of the audit file, when there is one, so a restart keeps
// it) and returns the audit logger also writing into it.
func (h *Handler) loadHistory(audit *zap.Logger) (*zap.Logger, error) {
	val, _, err := histories.LoadOrNew(h.Name, func() (caddy.Destructor, error) {
		idx := history.New(history.Options{})
		if h.AuditLog != "" {
			files, err := auditlog.Files(h.AuditLog)
			if err != nil {
				return nil, fmt.Errorf("list audit files: %w", err)
			}
			// In the background: Provision stays quick (64 MiB take
			// seconds on a busy machine), and records written meanwhile
			// still come out newest.
			logger := h.logger
			go func() {
				began := time.Now()
				n, err := idx.Seed(historySeedBytes, files...)
				if err != nil {
					// The history pages show less; the gateway runs on.
					logger.Warn("access history not read back from the audit log", zap.Error(err))
				}
				logger.Info("access history read back from the audit log", zap.Int64("bytes", n),
					zap.Int("records", idx.Len()), zap.Duration("took", time.Since(began)))
			}()
		}
		return historyIndex{idx}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("hubgate: access history: %w", err)
	}
	h.historyKey = h.Name
	h.history = val.(historyIndex).Index
	return audit.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewTee(c, zapcore.NewCore(zapcore.NewJSONEncoder(auditlog.EncoderConfig()), h.history, zapcore.InfoLevel))
	})), nil
}

// releaseHistory drops this config's hold on the history index.
func (h *Handler) releaseHistory() error {
	if h.historyKey == "" {
		return nil
	}
	h.historyKey, h.history = "", nil
	if _, err := histories.Delete(h.Name); err != nil {
		return fmt.Errorf("release access history: %w", err)
	}
	return nil
}
