package metrics

import (
	"context"
	"log/slog"
	"slices"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapSlog is a log/slog handler writing to a zap logger: the
// exporter-toolkit's web.Serve logs through *slog.Logger, the replicator
// through zap, and its lines must land in the same structured log. (zap's
// own bridge, go.uber.org/zap/exp/zapslog, is a separate experimental
// module; this is the small part of it the toolkit needs.)
type zapSlog struct {
	log    *zap.Logger
	fields []zap.Field
	group  string
}

func newSlog(log *zap.Logger) *slog.Logger { return slog.New(zapSlog{log: log}) }

func zapLevel(l slog.Level) zapcore.Level {
	switch {
	case l >= slog.LevelError:
		return zapcore.ErrorLevel
	case l >= slog.LevelWarn:
		return zapcore.WarnLevel
	case l >= slog.LevelInfo:
		return zapcore.InfoLevel
	default:
		return zapcore.DebugLevel
	}
}

func (h zapSlog) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.Core().Enabled(zapLevel(l))
}

func (h zapSlog) Handle(_ context.Context, r slog.Record) error {
	ce := h.log.Check(zapLevel(r.Level), r.Message)
	if ce == nil {
		return nil
	}
	fields := slices.Clone(h.fields)
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, h.field(a))
		return true
	})
	ce.Write(fields...)
	return nil
}

func (h zapSlog) field(a slog.Attr) zap.Field {
	key := a.Key
	if h.group != "" {
		key = h.group + "." + key
	}
	return zap.Any(key, a.Value.Resolve().Any())
}

func (h zapSlog) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := h
	out.fields = slices.Clone(h.fields)
	for _, a := range attrs {
		out.fields = append(out.fields, h.field(a))
	}
	return out
}

func (h zapSlog) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	out := h
	if h.group != "" {
		name = h.group + "." + name
	}
	out.group = name
	return out
}
