// Package logging builds the zap loggers each binary passes down.
// It must never expose a global logger.
package logging

import (
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// config returns the zap configuration for format ("json" or "console")
// and level.
func config(format, level string) (zap.Config, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return zap.Config{}, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "ts"
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		cfg.DisableStacktrace = true
	default:
		return zap.Config{}, fmt.Errorf("LOG_FORMAT: unknown format %q", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	return cfg, nil
}

// New returns a logger writing to stderr: JSON lines for format "json",
// a readable console format for "console". level is a zap level name.
func New(format, level string) (*zap.Logger, error) {
	cfg, err := config(format, level)
	if err != nil {
		return nil, err
	}
	log, err := cfg.Build()
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}
	return log, nil
}

// NewBuffered is New for high-volume logs (the proxy's access log): lines
// go to stderr through a 256 KiB buffer flushed every second, so a slow log
// reader cannot stall requests. Call stop at shutdown to flush.
func NewBuffered(format, level string) (log *zap.Logger, stop func(), err error) {
	cfg, err := config(format, level)
	if err != nil {
		return nil, nil, err
	}
	enc := zapcore.NewJSONEncoder(cfg.EncoderConfig)
	if format == "console" {
		enc = zapcore.NewConsoleEncoder(cfg.EncoderConfig)
	}
	ws := &zapcore.BufferedWriteSyncer{WS: zapcore.Lock(os.Stderr), Size: 256 << 10, FlushInterval: time.Second}
	return zap.New(zapcore.NewCore(enc, ws, cfg.Level)), func() { _ = ws.Stop() }, nil
}
