package pgtest

import (
	"net/url"
	"regexp"
)

var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:\\.|[^'])*'|\S+)`)

// redact hides the password of a connection string for error messages. It
// mirrors migrate.RedactURL; pgtest keeps its own copy so that the test
// harness depends on nothing of the product.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		if dsnPassword.MatchString(raw) || err != nil {
			return dsnPassword.ReplaceAllString(raw, "${1}xxxxx")
		}
		return raw
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
