package redact

import (
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// urlTokenRE matches a URL inside free text: a scheme, "://", and every
// byte up to a blank or a quote (Go's %q, pgx's backticks, shell quotes).
var urlTokenRE = regexp.MustCompile("[A-Za-z][A-Za-z0-9+.-]*://[^\\s\"'`<>]*")

// freeKeyRE matches a secret-looking key in free text with its separator:
// key=value (blanks around "=" allowed), key:value (no blank: "key: x" is
// prose), and JSON's "key":"value".
var freeKeyRE = regexp.MustCompile(`(?:^|[^A-Za-z0-9_.-])"?([A-Za-z_][A-Za-z0-9_.-]*)"?(?:\s*=\s*|:)`)

// seedRE matches a NATS NKey seed: "S", the key type (User, Operator,
// Account, Cluster, Node, curve X), base32 (nats-io/nkeys, strkey.go:
// PrefixByteSeed and the type prefixes; a seed encodes to 58 characters).
var seedRE = regexp.MustCompile(`\bS[UOACNX][A-Z2-7]{56}\b`)

// secretWordRE is a cheap first test: text with none of these words has
// no key=value secret to look for.
var secretWordRE = regexp.MustCompile(`(?i)pass|pwd|secret|token|apikey|api_key|authmechanismproperties`)

// Text masks by pattern every credential it can recognise in free text
// (a log message, a library's error): each scheme://... token as URL
// does, key=value / key:value / "key":"value" pairs with a secret key,
// and NATS NKey seeds. A URL whose password contains a blank or a quote
// cannot be delimited in free text; when the connection string is known,
// use a Scrubber, which removes its secrets in every spelling first.
func Text(s string) string {
	if strings.Contains(s, "://") {
		var b strings.Builder
		last := 0
		for _, m := range urlTokenRE.FindAllStringIndex(s, -1) {
			b.WriteString(maskFree(s[last:m[0]]))
			b.WriteString(URL(s[m[0]:m[1]]))
			last = m[1]
		}
		b.WriteString(maskFree(s[last:]))
		s = b.String()
	} else {
		s = maskFree(s)
	}
	if len(s) >= 58 && strings.IndexByte(s, 'S') >= 0 {
		s = seedRE.ReplaceAllString(s, Mask)
	}
	return s
}

// maskFree masks the secret key=value pairs of free text that holds no
// URL.
func maskFree(s string) string {
	if !secretWordRE.MatchString(s) {
		return s
	}
	return maskRanges(s, func(s string, fn func(start, end int)) {
		done := 0
		for _, m := range freeKeyRE.FindAllStringSubmatchIndex(s, -1) {
			if m[0] < done || !isSecretKey(s[m[2]:m[3]]) {
				continue
			}
			start, end := m[1], valueEnd(s, m[1], " \t\r\n\"'`")
			done = end
			if q := s[start]; end-start >= 2 && (q == '"' || q == '\'') && s[end-1] == q {
				start, end = start+1, end-1 // keep the quotes: JSON stays JSON
			}
			fn(start, end)
		}
	})
}

// Scrubber removes known credentials from text: those of the connection
// strings it was made with, and bare secret values. The zero value and
// nil scrub by pattern only (Text). A Scrubber is immutable and safe for
// concurrent use.
type Scrubber struct {
	conns   []string // connection strings, longest first
	secrets []string // every spelling of every credential, longest first
}

// New returns a Scrubber for the connection strings conns (URLs, URL
// lists, DSNs; empty ones are ignored).
func New(conns ...string) *Scrubber {
	s := &Scrubber{}
	for _, c := range conns {
		if c == "" {
			continue
		}
		s.conns = append(s.conns, c)
		s.secrets = append(s.secrets, Secrets(c)...)
	}
	s.normalize()
	return s
}

// WithSecrets returns a copy of s that also removes the bare values (a
// password or token read from a file, an NKey seed), in every spelling.
func (s *Scrubber) WithSecrets(values ...string) *Scrubber {
	out := &Scrubber{}
	if s != nil {
		out.conns = slices.Clone(s.conns)
		out.secrets = slices.Clone(s.secrets)
	}
	for _, v := range values {
		out.secrets = append(out.secrets, spellings(v)...)
	}
	out.normalize()
	return out
}

// normalize sorts longest first (a secret containing another is replaced
// whole) and drops duplicates and values that cannot be told from the
// mask ("", "x", ...).
func (s *Scrubber) normalize() {
	byLen := func(a, b string) int {
		if d := len(b) - len(a); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	}
	slices.SortFunc(s.conns, byLen)
	s.conns = slices.Compact(s.conns)
	s.secrets = slices.DeleteFunc(s.secrets, func(v string) bool { return strings.Contains(Mask, v) })
	slices.SortFunc(s.secrets, byLen)
	s.secrets = slices.Compact(s.secrets)
}

// String returns text with every known connection string replaced by its
// URL form, every known credential replaced by Mask, then Text applied.
func (s *Scrubber) String(text string) string {
	if s != nil {
		for _, c := range s.conns {
			if strings.Contains(text, c) {
				text = strings.ReplaceAll(text, c, URL(c))
			}
			if q := quoted(c); q != c && strings.Contains(text, q) {
				text = strings.ReplaceAll(text, q, URL(c))
			}
		}
		for _, v := range s.secrets {
			if strings.Contains(text, v) {
				text = strings.ReplaceAll(text, v, Mask)
			}
		}
	}
	return Text(text)
}

// Error wraps err so that its message is s.String(err.Error()); nil stays
// nil. errors.Is and errors.As see err's chain unchanged (classification
// by type keeps working), but an error found that way prints its own,
// unscrubbed message: print only the wrapper.
func (s *Scrubber) Error(err error) error {
	if err == nil {
		return nil
	}
	return &scrubbedError{msg: s.String(err.Error()), err: err}
}

// scrubbedError is an error whose message was scrubbed.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// Scrub is New(conns...).String(text).
func Scrub(text string, conns ...string) string { return New(conns...).String(text) }

// Error is New(conns...).Error(err): err with a message scrubbed of the
// credentials of conns and of anything Text recognises. Wrap a library's
// error with it before it leaves the function that knows the connection
// string: drivers quote the string they failed to parse.
func Error(err error, conns ...string) error { return New(conns...).Error(err) }

// Secrets returns every credential in the connection string conn (what
// URL masks), each in every spelling a library may print it: as written,
// percent-decoded, percent-encoded, and escaped as Go's %q would.
func Secrets(conn string) []string {
	var raw []string
	for _, part := range splitList(conn) {
		m := schemeRE.FindStringSubmatchIndex(part)
		if m == nil {
			raw = append(raw, dsnSecrets(part)...)
			if !strings.ContainsAny(strings.TrimSpace(part), " \t\r\n") {
				raw = append(raw, elementSecrets(part)...)
			}
			continue
		}
		rest := part[m[1]:]
		nats := isNATSScheme(part[m[2]:m[3]])
		raw = append(raw, userinfoSecret(rest, nats))
		if nats {
			raw = append(raw, elementSecrets(rest)...)
		}
		queryValues(rest, func(start, end int) { raw = append(raw, rest[start:end]) })
	}
	var out []string
	for _, v := range raw {
		out = append(out, spellings(v)...)
		out = append(out, pieces(v)...)
		// authMechanismProperties=AWS_SESSION_TOKEN:tok,...: the token on
		// its own too (the driver splits the pairs on "," and ":",
		// connstring ConnString.addOptions).
		for _, d := range []string{v, unescape(v)} {
			for _, pair := range strings.Split(d, ",") {
				if k, pv, ok := strings.Cut(pair, ":"); ok && isSecretKey(k) {
					out = append(out, spellings(pv)...)
				}
			}
		}
	}
	return slices.DeleteFunc(out, func(v string) bool { return v == "" })
}

// elementSecrets are the userinfo credentials of each comma-separated
// element of a NATS server list (an element without a scheme included).
func elementSecrets(list string) []string {
	var out []string
	for _, el := range strings.Split(list, ",") {
		if m := schemeRE.FindStringIndex(el); m != nil {
			el = el[m[1]:]
		}
		out = append(out, userinfoSecret(strings.TrimSpace(el), true))
	}
	return out
}

// dsnSecrets are the values of a DSN's secret keywords, quotes and
// escapes removed as libpq reads them.
func dsnSecrets(s string) []string {
	var out []string
	dsnValues(s, func(start, end int) {
		v := s[start:end]
		out = append(out, v)
		if len(v) >= 2 && (v[0] == '\'' || v[0] == '"') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out = append(out, strings.NewReplacer(`\\`, `\`, `\'`, `'`, `\"`, `"`).Replace(v))
	})
	return out
}

// minPiece is the shortest fragment of a credential pieces reports.
const minPiece = 3

// pieces are the fragments of a password between the delimiters a URL
// parser stops at (':', '/', '?', '#', '@'), at least minPiece bytes
// long: a parser that misreads an unencoded delimiter quotes a fragment
// on its own (net/url: `invalid port ":frag" after host`, which nats.go
// returns as is).
func pieces(v string) []string {
	if !strings.ContainsAny(v, ":/?#@") {
		return nil
	}
	var out []string
	for _, p := range strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(":/?#@", r) }) {
		if len(p) >= minPiece {
			out = append(out, spellings(p)...)
		}
	}
	return out
}

// spellings are the forms of v a library may print: as written,
// percent-decoded, percent-encoded (query and path rules) and %q-escaped.
func spellings(v string) []string {
	if v == "" {
		return nil
	}
	bases := []string{v, unescape(v)}
	if u, err := url.PathUnescape(v); err == nil {
		bases = append(bases, u)
	}
	out := bases
	for _, b := range bases {
		out = append(out, url.QueryEscape(b), url.PathEscape(b), quoted(b))
	}
	return out
}

// unescape percent-decodes v with the query rules ("+" is a blank), or
// returns v when it is not valid percent-encoding.
func unescape(v string) string {
	if d, err := url.QueryUnescape(v); err == nil {
		return d
	}
	return v
}

// quoted is v as it appears inside Go's %q (without the quotes).
func quoted(v string) string {
	q := strconv.Quote(v)
	return q[1 : len(q)-1]
}
