package redact

import (
	"regexp"
	"strings"
)

// Mask is what every credential is replaced by.
const Mask = "xxxxx"

// schemeRE matches the scheme of a URL at the start of a string.
var schemeRE = regexp.MustCompile(`^\s*([A-Za-z][A-Za-z0-9+.-]*)://`)

// nextURLRE matches where the next URL of a comma-separated list starts
// (nats.go splits a server list on ",", processUrlString).
var nextURLRE = regexp.MustCompile(`,\s*[A-Za-z][A-Za-z0-9+.-]*://`)

// queryKeyRE matches a query parameter's key and its "=". MongoDB
// separates options with "&" or ";" (connstring.extractQueryArgsFromURI),
// libpq and pgx with "&".
var queryKeyRE = regexp.MustCompile(`[?&;]([^=&;?#]*)=`)

// dsnKeyRE matches a libpq key=value keyword ("keyword = value", spaces
// around "=" allowed: https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-KEYWORD-VALUE).
var dsnKeyRE = regexp.MustCompile(`(?:^|\s)([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*`)

// URL returns the connection string s with every credential replaced by
// Mask. s may be a URL of any scheme, a comma-separated list of URLs (a
// NATS server list), a NATS server without a scheme (user:pass@host,
// token@host) or a libpq key=value DSN. It never fails and never returns
// an unmasked password, whatever s holds: see the package documentation
// for what is masked. URL is idempotent.
func URL(s string) string {
	parts := splitList(s)
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return strings.Join(parts, ",")
}

// URLs is URL for a comma-separated server list
// ("nats://u:p@h1,nats://u:p@h2", or "nats://u:p@h1,u:p@h2"): every
// element's credentials are masked. It is the same function as URL, which
// accepts lists too; the name says what the caller holds.
func URLs(list string) string { return URL(list) }

// splitList cuts s where a new "scheme://" follows a comma. A list
// element without a scheme stays in the element before it; the userinfo
// rule (up to the last '@') then masks across both.
func splitList(s string) []string {
	var out []string
	for {
		loc := nextURLRE.FindStringIndex(s)
		if loc == nil {
			return append(out, s)
		}
		out = append(out, s[:loc[0]])
		s = s[loc[0]+1:]
	}
}

// redactOne masks one URL, or a string without a scheme.
func redactOne(s string) string {
	m := schemeRE.FindStringSubmatchIndex(s)
	if m == nil {
		return redactSchemeless(s)
	}
	prefix, rest := s[:m[1]], s[m[1]:]
	return prefix + maskQuery(maskUserinfo(rest, isNATSScheme(s[m[2]:m[3]])))
}

// redactSchemeless masks a DSN's secret keywords and, for a string shaped
// like a NATS server without a scheme (no blanks, an '@'; nats.go prefixes
// "nats://" to such an element, Conn.parseServerURL), its userinfo.
func redactSchemeless(s string) string {
	s = maskDSN(s)
	if t := strings.TrimSpace(s); t != "" && !strings.ContainsAny(t, " \t\r\n") && strings.Contains(t, "@") {
		s = maskQuery(maskUserinfo(s, true))
	}
	return s
}

// isNATSScheme reports whether scheme is one nats.go dials (nats, tls,
// ws, wss): a user without a password there is an auth token.
func isNATSScheme(scheme string) bool {
	switch strings.ToLower(scheme) {
	case "nats", "tls", "ws", "wss":
		return true
	}
	return false
}

// userinfoEnd is the index of the '@' ending the userinfo of rest (the
// part after "scheme://"), or -1. It is the last '@' of rest: an
// unencoded '/', '?', '#' or '@' in a password must not end it early
// (pgx and net/url would then read part of the password as the host or
// the path). An '@' in a query value makes this over-mask, never
// under-mask.
func userinfoEnd(rest string) int { return strings.LastIndexByte(rest, '@') }

// maskUserinfo masks the password of rest's userinfo; with token, a user
// without a password (a NATS token) is masked whole.
func maskUserinfo(rest string, token bool) string {
	at := userinfoEnd(rest)
	if at < 0 {
		return rest
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	switch {
	case hasPass:
		return user + ":" + Mask + rest[at:]
	case token && at > 0:
		return Mask + rest[at:]
	}
	return rest
}

// userinfoSecret is the credential maskUserinfo hides, "" if none.
func userinfoSecret(rest string, token bool) string {
	at := userinfoEnd(rest)
	if at < 0 {
		return ""
	}
	user, pass, hasPass := strings.Cut(rest[:at], ":")
	switch {
	case hasPass:
		return pass
	case token:
		return user
	}
	return ""
}

// isSecretKey reports whether a query parameter or DSN keyword holds a
// credential; see the package documentation for the list.
func isSecretKey(key string) bool {
	k := strings.ToLower(strings.TrimSpace(key))
	switch k {
	case "pass", "pwd", "apikey", "api_key", "authmechanismproperties":
		return true
	}
	for _, w := range []string{"password", "passwd", "passphrase", "secret"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return strings.HasSuffix(k, "token")
}

// queryValues calls fn with the [start, end) of the value of every secret
// query parameter in s, left to right, never overlapping. A secret value
// runs to the next '&' (a ';' or '?' does not end it: over-masking a
// MongoDB option after it is safe; cutting a password short is not).
func queryValues(s string, fn func(start, end int)) {
	done := 0
	for _, m := range queryKeyRE.FindAllStringSubmatchIndex(s, -1) {
		if m[0] < done {
			continue
		}
		key := s[m[2]:m[3]]
		if !isSecretKey(key) && !isSecretKey(unescape(key)) {
			continue
		}
		end := strings.IndexByte(s[m[1]:], '&')
		if end < 0 {
			end = len(s)
		} else {
			end += m[1]
		}
		fn(m[1], end)
		done = end
	}
}

// maskQuery masks the values of secret query parameters.
func maskQuery(s string) string { return maskRanges(s, queryValues) }

// dsnValues calls fn with the [start, end) of every secret keyword's value
// in a libpq key=value string: a single-quoted value through its closing
// quote (backslash escapes), else up to the next blank.
func dsnValues(s string, fn func(start, end int)) {
	done := 0
	for _, m := range dsnKeyRE.FindAllStringSubmatchIndex(s, -1) {
		if m[0] < done || !isSecretKey(s[m[2]:m[3]]) {
			continue
		}
		end := valueEnd(s, m[1], " \t\r\n")
		fn(m[1], end)
		done = end
	}
}

// valueEnd is where the value starting at s[i] ends: after the closing
// quote of a value opened by ' or ", else at the first byte of stops.
// A backslash escapes the next byte either way (libpq's rule).
func valueEnd(s string, i int, stops string) int {
	if i < len(s) && (s[i] == '\'' || s[i] == '"') {
		q := s[i]
		for j := i + 1; j < len(s); j++ {
			switch s[j] {
			case '\\':
				j++
			case q:
				return j + 1
			}
		}
		return len(s)
	}
	for j := i; j < len(s); j++ {
		switch {
		case s[j] == '\\':
			j++
		case strings.IndexByte(stops, s[j]) >= 0:
			return j
		}
	}
	return len(s)
}

// maskDSN masks the secret keywords of a libpq key=value string.
func maskDSN(s string) string {
	return maskRanges(s, dsnValues)
}

// maskRanges replaces every non-empty range find reports with Mask.
func maskRanges(s string, find func(string, func(start, end int))) string {
	var b strings.Builder
	last := 0
	find(s, func(start, end int) {
		if start >= end || start < last {
			return
		}
		if masked(s[start:end]) {
			// Already masked: keep what follows the mask, the ")" or ":"
			// that ends a URL quoted in a message.
			end = start + len(Mask)
		}
		b.WriteString(s[last:start])
		b.WriteString(Mask)
		last = end
	})
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// masked reports whether v is Mask followed by nothing but the
// punctuation that ends a quoted URL in a message: text an earlier pass
// has masked.
func masked(v string) bool {
	rest, ok := strings.CutPrefix(v, Mask)
	return ok && strings.Trim(rest, ")]}>:,.;") == ""
}
