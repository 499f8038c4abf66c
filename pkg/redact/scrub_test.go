package redact_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/amanat/cdc/pkg/redact"
)

// libraryErrors returns the errors each library this program hands a
// connection string to makes of conn (nil ones left out): they quote the
// string, or fragments of it, in many ways.
func libraryErrors(conn string) map[string]error {
	errs := map[string]error{}
	add := func(name string, err error) {
		if err != nil {
			errs[name] = err
		}
	}
	_, err := url.Parse(conn)
	add("net/url", err)
	switch {
	case strings.HasPrefix(conn, "postgres"), strings.Contains(conn, "="):
		_, err = pgconn.ParseConfig(conn)
		add("pgconn", err)
		_, err = pgxpool.ParseConfig(conn)
		add("pgxpool", err)
		if err != nil {
			add("pgxpool unwrapped", errors.Unwrap(err))
		}
	case strings.HasPrefix(conn, "mongodb"):
		add("mongo-driver", options.Client().ApplyURI(conn).Validate())
	default:
		// A closed port: nats.go fails on the URL or on the dial at once.
		_, err = nats.Connect(conn, nats.Timeout(time.Second), nats.NoReconnect())
		add("nats.go", err)
	}
	return errs
}

// TestErrorLibraryMessages: the errors pgx, the MongoDB driver, nats.go
// and net/url return for every table shape (most of them reject the
// malformed ones, quoting them) are scrubbed of every credential by
// Error, and stay classifiable.
func TestErrorLibraryMessages(t *testing.T) {
	n, echoed := 0, 0
	for _, tc := range urlCases {
		if tc.in == "" || !strings.Contains(tc.in, pw) {
			continue
		}
		for lib, err := range libraryErrors(closePorts(tc.in)) {
			n++
			if strings.Contains(err.Error(), pw) {
				echoed++
			}
			got := redact.Error(fmt.Errorf("connect: %w", err), closePorts(tc.in))
			for _, l := range append([]string{pw}, tc.leak...) {
				if strings.Contains(got.Error(), l) {
					t.Errorf("%s: %s error leaks %q:\n raw %v\n got %v", tc.name, lib, l, err, got)
				}
			}
			if !errors.Is(got, err) {
				t.Errorf("%s: %s: errors.Is lost the library's error", tc.name, lib)
			}
		}
	}
	// The libraries do echo credentials: the cases must include those.
	if n < 20 || echoed < 5 {
		t.Fatalf("only %d library errors exercised, %d of them quoting a credential: the table lost its malformed cases", n, echoed)
	}
}

// closePorts points the NATS cases at a port nothing listens on (1), so
// nats.Connect fails at once.
func closePorts(s string) string {
	for _, h := range []string{"n1:4222", "n1:4443", "h1:4222", "h2:4222", "n1:8080", "n2:443"} {
		s = strings.ReplaceAll(s, h, "127.0.0.1:1")
	}
	return s
}

func TestScrubber(t *testing.T) {
	type urlErr = url.Error
	conn := `postgres://cdc:S3cr"q/x@pg/db`
	for _, tc := range []struct {
		name    string
		conns   []string
		secrets []string
		text    string
		want    string
	}{
		{name: "the conn as written", conns: []string{conn}, text: "open " + conn + ": refused", want: "open postgres://cdc:xxxxx@pg/db: refused"},
		{name: "the conn %q-quoted", conns: []string{conn}, text: fmt.Sprintf("parse %q: invalid port", conn), want: `parse "postgres://cdc:xxxxx@pg/db": invalid port`},
		{name: "a fragment net/url quotes", conns: []string{"nats://u:S3cr/x@h:1"}, text: `invalid port ":S3cr" after host`, want: `invalid port ":xxxxx" after host`},
		{name: "percent-decoded password", conns: []string{"postgres://cdc:S3cr%2Fx@pg/db"}, text: "password S3cr/x rejected", want: "password xxxxx rejected"},
		{name: "blank in password", conns: []string{"postgres://cdc:S3 cr@pg/db"}, text: "cannot parse postgres://cdc:S3 cr@pg/db", want: "cannot parse postgres://cdc:xxxxx@pg/db"},
		{name: "AWS token echoed alone", conns: []string{"mongodb://m/?authMechanismProperties=AWS_SESSION_TOKEN:S3crTok"}, text: "bad token S3crTok", want: "bad token xxxxx"},
		{name: "bare secret", secrets: []string{"S3cr-from-file"}, text: "auth S3cr-from-file failed", want: "auth xxxxx failed"},
		{name: "bare secret encoded", secrets: []string{"S3cr/f"}, text: "auth S3cr%2Ff failed", want: "auth xxxxx failed"},
		{name: "mask-like secret ignored", secrets: []string{"x"}, text: "exit", want: "exit"},
		{name: "no conns: patterns only", text: "nats://S3crTOK@h", want: "nats://xxxxx@h"},
	} {
		s := redact.New(tc.conns...).WithSecrets(tc.secrets...)
		if got := s.String(tc.text); got != tc.want {
			t.Errorf("%s: String(%q)\n got %q\nwant %q", tc.name, tc.text, got, tc.want)
		}
	}

	var nilS *redact.Scrubber
	if got := nilS.String("nats://S3crTOK@h"); got != "nats://xxxxx@h" {
		t.Errorf("nil Scrubber: %q", got)
	}
	if redact.Error(nil, conn) != nil {
		t.Error("Error(nil) is not nil")
	}
	ue := &urlErr{Op: "parse", URL: conn, Err: errors.New("invalid port")}
	err := redact.Error(fmt.Errorf("nats connect: %w", ue), conn)
	var as *url.Error
	if !errors.As(err, &as) || as != ue {
		t.Errorf("errors.As through Error lost *url.Error")
	}
	if strings.Contains(err.Error(), "S3cr") || strings.Contains(fmt.Sprintf("%v|%s|%+v", err, err, err), "S3cr") {
		t.Errorf("Error leaks: %v", err)
	}
}

// stringer is a fmt.Stringer that prints a connection string.
type stringer string

func (s stringer) String() string { return string(s) }

func TestCore(t *testing.T) {
	conn := "nats://u:S3cr/x@127.0.0.1:1,nats://S3crTOK@127.0.0.1:2"
	bad, _, _ := strings.Cut(conn, ",") // rejected by net/url: "/" in the password
	_, connErr := url.Parse(bad)
	if connErr == nil {
		t.Fatal("want url.Parse to reject the test URL")
	}
	var buf bytes.Buffer
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	base := zap.New(zapcore.NewCore(enc, zapcore.AddSync(&buf), zap.InfoLevel))
	log := redact.New(conn).WithSecrets("S3cr-seed").Logger(base)

	log.With(zap.String("url", conn)).Info("connecting to "+conn,
		zap.Error(connErr),
		zap.NamedError("cause", fmt.Errorf("wrapped: %w", connErr)),
		zap.Stringer("addr", stringer(conn)),
		zap.ByteString("raw", []byte("token=S3crTOK")),
		zap.Any("cfg", map[string]string{"url": conn, "seed": "S3cr-seed"}),
		zap.Int("n", 7),
	)
	log.Debug("below the level " + conn)
	out := buf.String()
	if strings.Contains(out, "S3cr") {
		t.Fatalf("log output leaks:\n%s", out)
	}
	for _, want := range []string{`"n":7`, `"url":"nats://u:xxxxx@127.0.0.1:1,nats://xxxxx@127.0.0.1:2"`, `"addr":`, `"cause":`, `"cfg":`, `"msg":"connecting to nats://`} {
		if !strings.Contains(out, want) {
			t.Errorf("log output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "below the level") {
		t.Errorf("a debug entry passed an info core:\n%s", out)
	}
}
