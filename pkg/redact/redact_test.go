package redact_test

import (
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/redact"
)

// urlCase is one connection string, what URL must make of it, and the
// credential fragments that must not survive.
type urlCase struct {
	name string
	in   string
	want string
	leak []string // besides the default "S3cr" marker
}

// pw is in every password and token of the table, so a case that leaks
// is caught even when its want is wrong.
const pw = "S3cr"

var urlCases = []urlCase{
	// PostgreSQL (pgx / libpq URIs and key=value).
	{name: "pg basic", in: "postgres://cdc:S3cr@pg:5432/escrow?sslmode=verify-full", want: "postgres://cdc:xxxxx@pg:5432/escrow?sslmode=verify-full"},
	{name: "pg postgresql scheme", in: "postgresql://cdc:S3cr@pg/escrow", want: "postgresql://cdc:xxxxx@pg/escrow"},
	{name: "pg user only", in: "postgres://cdc@pg/escrow", want: "postgres://cdc@pg/escrow"},
	{name: "pg empty password", in: "postgres://cdc:@pg/escrow", want: "postgres://cdc:xxxxx@pg/escrow"},
	{name: "pg password query", in: "postgres://cdc@pg/db?password=S3cr", want: "postgres://cdc@pg/db?password=xxxxx"},
	{name: "pg password query mid", in: "postgres://pg/db?user=cdc&password=S3cr&sslmode=require", want: "postgres://pg/db?user=cdc&password=xxxxx&sslmode=require"},
	{name: "pg sslpassword query", in: "postgres://cdc@pg/db?sslmode=verify-full&sslkey=/k.pem&sslpassword=S3cr", want: "postgres://cdc@pg/db?sslmode=verify-full&sslkey=/k.pem&sslpassword=xxxxx"},
	{name: "pg percent-encoded key", in: "postgres://cdc@pg/db?pass%77ord=S3cr&x=1", want: "postgres://cdc@pg/db?pass%77ord=xxxxx&x=1"},
	{name: "pg upper-case key", in: "postgres://cdc@pg/db?PASSWORD=S3cr", want: "postgres://cdc@pg/db?PASSWORD=xxxxx"},
	{name: "pg encoded password", in: "postgres://cdc:S3cr%2F%40x@pg/db", want: "postgres://cdc:xxxxx@pg/db"},
	{name: "pg unencoded slash (issue: cdc migrate)", in: "postgres://cdc:S3cr/x@pg:5432/escrow", want: "postgres://cdc:xxxxx@pg:5432/escrow", leak: []string{"/x@"}},
	{name: "pg unencoded slash digits (net/url parses it)", in: "postgres://cdc:1234/S3cr@pg/db", want: "postgres://cdc:xxxxx@pg/db", leak: []string{"1234"}},
	{name: "pg unencoded at", in: "postgres://cdc:S3cr@x@pg/db", want: "postgres://cdc:xxxxx@pg/db"},
	{name: "pg unencoded hash", in: "postgres://cdc:12#S3cr@pg/db", want: "postgres://cdc:xxxxx@pg/db"},
	{name: "pg unencoded question mark", in: "postgres://cdc:S3cr?x=1@pg/db", want: "postgres://cdc:xxxxx@pg/db"},
	{name: "pg colon in password", in: "postgres://cdc:ab:S3cr@pg/db", want: "postgres://cdc:xxxxx@pg/db"},
	{name: "pg blank in password", in: "postgres://cdc:a S3cr@pg/db", want: "postgres://cdc:xxxxx@pg/db"},
	{name: "pg bad port", in: "postgres://u:S3cr@h:badport/db", want: "postgres://u:xxxxx@h:badport/db"},
	{name: "pg unparseable escape", in: "postgres://u:S3cr%zz@h/%zz", want: "postgres://u:xxxxx@h/%zz"},
	{name: "pg multi-host", in: "postgres://cdc:S3cr@pg1:5432,pg2:5433/db?target_session_attrs=read-write", want: "postgres://cdc:xxxxx@pg1:5432,pg2:5433/db?target_session_attrs=read-write"},
	{name: "pg ipv6", in: "postgres://cdc:S3cr@[::1]:5432/db", want: "postgres://cdc:xxxxx@[::1]:5432/db"},
	{name: "dsn", in: "host=pg user=cdc password=S3cr dbname=escrow sslmode=verify-full", want: "host=pg user=cdc password=xxxxx dbname=escrow sslmode=verify-full"},
	{name: "dsn first", in: "password=S3cr host=pg", want: "password=xxxxx host=pg"},
	{name: "dsn blanks around =", in: "host=pg password = S3cr dbname=x", want: "host=pg password = xxxxx dbname=x"},
	{name: "dsn quoted with escapes", in: `host=pg password='a S3cr\' b' dbname=x`, want: "host=pg password=xxxxx dbname=x", leak: []string{" b'"}},
	{name: "dsn unterminated quote", in: `host=pg password='S3cr dbname=x`, want: "host=pg password=xxxxx"},
	{name: "dsn sslpassword", in: "host=pg sslkey=/k.pem sslpassword=S3cr", want: "host=pg sslkey=/k.pem sslpassword=xxxxx"},
	{name: "dsn ipv6 host", in: "host=::1 port=5432 password=S3cr", want: "host=::1 port=5432 password=xxxxx"},

	// MongoDB connection strings.
	{name: "mongo basic", in: "mongodb://cdc:S3cr@m1:27017/?replicaSet=rs0", want: "mongodb://cdc:xxxxx@m1:27017/?replicaSet=rs0"},
	{name: "mongo multi-host", in: "mongodb://cdc:S3cr@m1:27017,m2:27017,m3:27017/escrow?replicaSet=rs0&authSource=admin", want: "mongodb://cdc:xxxxx@m1:27017,m2:27017,m3:27017/escrow?replicaSet=rs0&authSource=admin"},
	{name: "mongo srv", in: "mongodb+srv://cdc:S3cr@cluster0.example.net/?retryWrites=true&w=majority", want: "mongodb+srv://cdc:xxxxx@cluster0.example.net/?retryWrites=true&w=majority"},
	{name: "mongo srv token-like user is kept", in: "mongodb+srv://cdc@cluster0.example.net/", want: "mongodb+srv://cdc@cluster0.example.net/"},
	{name: "mongo AWS session token", in: "mongodb://AKIAX:S3cr@m1/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:S3crTok&appName=x", want: "mongodb://AKIAX:xxxxx@m1/?authMechanism=MONGODB-AWS&authMechanismProperties=xxxxx&appName=x"},
	{name: "mongo AWS session token encoded", in: "mongodb://m1/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN%3AS3crTok", want: "mongodb://m1/?authMechanism=MONGODB-AWS&authMechanismProperties=xxxxx"},
	{name: "mongo AWS session token with @", in: "mongodb://m1/?authMechanismProperties=AWS_SESSION_TOKEN:S3cr@Tok", want: "mongodb://m1/?authMechanismProperties=xxxxx", leak: []string{"Tok"}},
	{name: "mongo tlsCertificateKeyFilePassword", in: "mongodb://m1/?tls=true&tlsCertificateKeyFile=/c.pem&tlsCertificateKeyFilePassword=S3cr", want: "mongodb://m1/?tls=true&tlsCertificateKeyFile=/c.pem&tlsCertificateKeyFilePassword=xxxxx"},
	{name: "mongo sslClientCertificateKeyPassword", in: "mongodb://m1/?ssl=true&sslClientCertificateKeyPassword=S3cr&w=1", want: "mongodb://m1/?ssl=true&sslClientCertificateKeyPassword=xxxxx&w=1"},
	{name: "mongo ; separator over-masks to the next &", in: "mongodb://m1/?appName=a;tlsCertificateKeyFilePassword=S3cr;w=1", want: "mongodb://m1/?appName=a;tlsCertificateKeyFilePassword=xxxxx"},
	{name: "mongo unencoded slash", in: "mongodb://cdc:S3cr/x@m1/?replicaSet=rs0", want: "mongodb://cdc:xxxxx@m1/?replicaSet=rs0"},
	{name: "mongo ipv6", in: "mongodb://cdc:S3cr@[fe80::1%25eth0]:27017/", want: "mongodb://cdc:xxxxx@[fe80::1%25eth0]:27017/"},

	// NATS server URLs and lists (nats.go: nats, tls, ws, wss).
	{name: "nats user password", in: "nats://cdc:S3cr@n1:4222", want: "nats://cdc:xxxxx@n1:4222"},
	{name: "nats list (issue: only the first was masked)", in: "nats://u:S3cr@h1,nats://u:S3cr@h2", want: "nats://u:xxxxx@h1,nats://u:xxxxx@h2"},
	{name: "nats list of three with blanks", in: "nats://u:S3cr@h1:4222, nats://v:S3cr2@h2:4222 ,tls://w:S3cr3@h3", want: "nats://u:xxxxx@h1:4222, nats://v:xxxxx@h2:4222 ,tls://w:xxxxx@h3"},
	{name: "nats list, second without scheme", in: "nats://u:S3cr@h1,v:S3cr@h2", want: "nats://u:xxxxx@h2"},
	{name: "nats token (issue: printed whole)", in: "nats://S3crTOKEN@n1:4222", want: "nats://xxxxx@n1:4222"},
	{name: "nats token list", in: "nats://S3crA@h1,nats://S3crB@h2", want: "nats://xxxxx@h1,nats://xxxxx@h2"},
	{name: "tls token", in: "tls://S3crTOKEN@n1:4443", want: "tls://xxxxx@n1:4443"},
	{name: "ws and wss", in: "ws://u:S3cr@n1:8080,wss://S3crT@n2:443", want: "ws://u:xxxxx@n1:8080,wss://xxxxx@n2:443"},
	{name: "nats without scheme", in: "u:S3cr@n1:4222", want: "u:xxxxx@n1:4222"},
	{name: "nats token without scheme", in: "S3crTOKEN@n1:4222", want: "xxxxx@n1:4222"},
	{name: "nats ipv6", in: "nats://u:S3cr@[::1]:4222", want: "nats://u:xxxxx@[::1]:4222"},
	{name: "nats token unencoded slash", in: "nats://S3cr/x@n1:4222", want: "nats://xxxxx@n1:4222"},

	// Other shapes.
	{name: "https token query", in: "https://h/v1?token=S3cr&x=1", want: "https://h/v1?token=xxxxx&x=1"},
	{name: "access_token and secret", in: "https://h/?access_token=S3cr&client_secret=S3cr2", want: "https://h/?access_token=xxxxx&client_secret=xxxxx"},
	{name: "no credentials", in: "nats://127.0.0.1:4222,nats://[::1]:4222", want: "nats://127.0.0.1:4222,nats://[::1]:4222"},
	{name: "already masked", in: "postgres://cdc:xxxxx@pg/db?password=xxxxx", want: "postgres://cdc:xxxxx@pg/db?password=xxxxx"},
	{name: "empty", in: "", want: ""},
	{name: "plain word", in: "localhost", want: "localhost"},
	{name: "leading blank", in: " postgres://cdc:S3cr@pg/db", want: " postgres://cdc:xxxxx@pg/db"},
}

func TestURL(t *testing.T) {
	for _, tc := range urlCases {
		t.Run(tc.name, func(t *testing.T) {
			got := redact.URL(tc.in)
			if got != tc.want {
				t.Errorf("URL(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
			for _, l := range append([]string{pw}, tc.leak...) {
				if strings.Contains(got, l) {
					t.Errorf("URL(%q) = %q still holds %q", tc.in, got, l)
				}
			}
			if again := redact.URL(got); again != got {
				t.Errorf("URL is not idempotent: URL(%q) = %q", got, again)
			}
			if lst := redact.URLs(tc.in); lst != got {
				t.Errorf("URLs(%q) = %q, URL gives %q", tc.in, lst, got)
			}
		})
	}
}

// TestURLInText: every table URL embedded in free text the way libraries
// quote it (%q, backticks, parentheses, after "at ") is masked by Text.
func TestURLInText(t *testing.T) {
	for _, tc := range urlCases {
		if strings.ContainsAny(tc.in, " '\"") || !strings.Contains(tc.in, "://") {
			continue // a blank or quote cannot be delimited in free text: TestScrubber covers them
		}
		for _, f := range []struct {
			format string
			exact  bool // false: a secret query value at the end swallows the ")"
		}{
			{format: `parse "%s": invalid port`, exact: true},
			{format: "cannot parse `%s`: bad", exact: true},
			{format: "dial %s\nnext line", exact: true},
			{format: "unreachable at start-up (%s): refused"},
		} {
			// Masked first, as callers do (fmt.Errorf("...(%s): %w",
			// redact.URL(u), err)), then scrubbed: nothing else is lost.
			if got, want := redact.Text(strings.Replace(f.format, "%s", tc.want, 1)), strings.Replace(f.format, "%s", tc.want, 1); got != want {
				t.Errorf("%s: Text of a masked message\n got %q\nwant %q", tc.name, got, want)
			}
			text := strings.Replace(f.format, "%s", tc.in, 1)
			got := redact.Text(text)
			for _, l := range append([]string{pw}, tc.leak...) {
				if strings.Contains(got, l) {
					t.Errorf("%s: Text(%q) = %q still holds %q", tc.name, text, got, l)
				}
			}
			if want := strings.Replace(f.format, "%s", tc.want, 1); f.exact && got != want {
				t.Errorf("%s: Text(%q)\n got %q\nwant %q", tc.name, text, got, want)
			}
		}
	}
}

func TestText(t *testing.T) {
	seed := "SUAM" + strings.Repeat("Q", 54) // 58 characters: a user seed's shape
	for _, tc := range []struct{ in, want string }{
		{in: "password authentication failed for user \"cdc\"", want: "password authentication failed for user \"cdc\""},
		{in: "cannot parse `host=pg password=S3cr user=u bogus`: failed", want: "cannot parse `host=pg password=xxxxx user=u bogus`: failed"},
		{in: `{"password":"S3cr","user":"u"}`, want: `{"password":"xxxxx","user":"u"}`},
		{in: "token:S3cr next", want: "token:xxxxx next"},
		{in: "properties AWS_SESSION_TOKEN:S3cr,SERVICE_NAME:x", want: "properties AWS_SESSION_TOKEN:xxxxx"},
		{in: "password='S3 cr' rest", want: "password='xxxxx' rest"},
		{in: "seed " + seed + " end", want: "seed xxxxx end"},
		{in: "dial tcp 127.0.0.1:4222: connect: connection refused", want: "dial tcp 127.0.0.1:4222: connect: connection refused"},
		{in: "a nats://S3crTOK@h1:4222 and postgres://u:S3cr@pg/db?sslpassword=S3cr2 b", want: "a nats://xxxxx@h1:4222 and postgres://u:xxxxx@pg/db?sslpassword=xxxxx b"},
	} {
		if got := redact.Text(tc.in); got != tc.want {
			t.Errorf("Text(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestSecrets(t *testing.T) {
	for _, tc := range []struct {
		conn string
		want []string // each must be among Secrets(conn)
		not  []string // none may be
	}{
		{conn: "postgres://cdc:S3cr%2Fx@pg/db", want: []string{"S3cr%2Fx", "S3cr/x"}, not: []string{"cdc", "pg"}},
		{conn: "postgres://cdc:S3cr/x@pg/db", want: []string{"S3cr/x", "S3cr%2Fx", "S3cr"}},
		{conn: "nats://S3crTOK@h1,nats://u:S3crPW@h2,v:S3crPW2@h3", want: []string{"S3crTOK", "S3crPW", "S3crPW2"}, not: []string{"u", "v"}},
		{conn: "mongodb://m1/?authMechanismProperties=AWS_SESSION_TOKEN%3AS3crT%2Bk", want: []string{"AWS_SESSION_TOKEN%3AS3crT%2Bk", "AWS_SESSION_TOKEN:S3crT+k", "S3crT+k", "S3crT%2Bk"}},
		{conn: `host=pg password='S3 cr\'et'`, want: []string{`'S3 cr\'et'`, `S3 cr'et`}},
		{conn: "mongodb://cdc@m1/", not: []string{"cdc"}},
		{conn: "postgres://pg/db", not: []string{""}},
	} {
		got := redact.Secrets(tc.conn)
		has := func(v string) bool {
			for _, g := range got {
				if g == v {
					return true
				}
			}
			return false
		}
		for _, w := range tc.want {
			if !has(w) {
				t.Errorf("Secrets(%q) = %q, missing %q", tc.conn, got, w)
			}
		}
		for _, n := range tc.not {
			if has(n) {
				t.Errorf("Secrets(%q) = %q, must not hold %q", tc.conn, got, n)
			}
		}
	}
}
