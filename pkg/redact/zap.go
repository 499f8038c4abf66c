package redact

import (
	"encoding/json"
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Logger returns log with every entry scrubbed by s (see Core).
func (s *Scrubber) Logger(log *zap.Logger) *zap.Logger {
	return log.WithOptions(zap.WrapCore(s.Core))
}

// Core wraps c so that each entry's message and stack, and its string,
// byte-string, error, stringer and reflected fields (those given to With
// too), are scrubbed by s before c encodes them. Object and array
// marshalers are passed through: log connection strings as strings.
//
// The wrapper decides with c.Enabled and then writes to c, so a sampling
// or filtering core must wrap it, not be wrapped by it.
func (s *Scrubber) Core(c zapcore.Core) zapcore.Core { return &scrubCore{Core: c, s: s} }

type scrubCore struct {
	zapcore.Core
	s *Scrubber
}

func (c *scrubCore) With(fields []zapcore.Field) zapcore.Core {
	return &scrubCore{Core: c.Core.With(c.s.fields(fields)), s: c.s}
}

func (c *scrubCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *scrubCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	e.Message = c.s.String(e.Message)
	if e.Stack != "" {
		e.Stack = c.s.String(e.Stack)
	}
	return c.Core.Write(e, c.s.fields(fields))
}

// fields returns fields with their text scrubbed; fields is not changed.
func (s *Scrubber) fields(fields []zapcore.Field) []zapcore.Field {
	var out []zapcore.Field
	set := func(i int, f zapcore.Field) {
		if out == nil {
			out = append([]zapcore.Field(nil), fields...)
		}
		out[i] = f
	}
	for i, f := range fields {
		switch f.Type {
		case zapcore.StringType:
			if v := s.String(f.String); v != f.String {
				f.String = v
				set(i, f)
			}
		case zapcore.ByteStringType:
			if b, ok := f.Interface.([]byte); ok {
				if v := s.String(string(b)); v != string(b) {
					f.Interface = []byte(v)
					set(i, f)
				}
			}
		case zapcore.ErrorType:
			if err, ok := f.Interface.(error); ok && err != nil {
				f.Interface = s.Error(err)
				set(i, f)
			}
		case zapcore.StringerType:
			if st, ok := f.Interface.(fmt.Stringer); ok {
				set(i, zap.String(f.Key, s.String(stringOf(st))))
			}
		case zapcore.ReflectType:
			b, err := json.Marshal(f.Interface)
			text := string(b)
			if err != nil {
				text = fmt.Sprintf("%+v", f.Interface)
			}
			if v := s.String(text); v != text {
				set(i, zap.String(f.Key, v))
			}
		}
	}
	if out == nil {
		return fields
	}
	return out
}

// stringOf is st.String(), or the panic's text (zap's own stringer
// encoding recovers too).
func stringOf(st fmt.Stringer) (s string) {
	defer func() {
		if r := recover(); r != nil {
			s = fmt.Sprintf("PANIC=%v", r)
		}
	}()
	return st.String()
}
