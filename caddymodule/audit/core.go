package audit

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// EncoderConfig is the JSON encoding of Caddy's default logs (float
// seconds in "ts", lower-case "level", "logger", "msg"), for audit records
// that read like the rest of the gateway's logs.
func EncoderConfig() zapcore.EncoderConfig {
	cfg := zap.NewProductionEncoderConfig()
	cfg.EncodeTime = zapcore.EpochTimeEncoder
	cfg.EncodeDuration = zapcore.SecondsDurationEncoder
	cfg.CallerKey, cfg.StacktraceKey = "", ""
	return cfg
}

// NewCore is a zapcore.Core that writes JSON records at level or above to
// w, one line per entry.
func NewCore(w *Writer, level zapcore.LevelEnabler) zapcore.Core {
	return zapcore.NewCore(zapcore.NewJSONEncoder(EncoderConfig()), w, level)
}

// Tee returns logger also writing to w: the gateway wraps its
// "hubgate.audit" logger with it, so its records still go to Caddy's logs
// and, chained and signed, to the audit file.
func Tee(logger *zap.Logger, w *Writer) *zap.Logger {
	return logger.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewTee(c, NewCore(w, zapcore.InfoLevel))
	}))
}

// Interface guard: a Writer is a zapcore.WriteSyncer.
var _ zapcore.WriteSyncer = (*Writer)(nil)
