// Package redact removes credentials from connection strings before they
// reach a log line, an error or a status report.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// userinfoRE matches "scheme://user:password@" in strings url.Parse
// rejects (for example multi-host MongoDB URIs).
var userinfoRE = regexp.MustCompile(`(?i)^([a-z][a-z0-9+.-]*://)([^@/]*)@`)

// passwordParamRE matches password-like query parameters.
var passwordParamRE = regexp.MustCompile(`(?i)((?:^|[?&;\s])(?:password|pass|pwd|sslpassword|token|secret)=)[^&;\s]*`)

// URL returns s with any password replaced by "xxxxx". It never fails: a
// string it cannot parse is scrubbed by pattern.
func URL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && !strings.Contains(u.Host, ",") {
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			}
		}
		out := u.String()
		return passwordParamRE.ReplaceAllString(out, "${1}xxxxx")
	}
	out := userinfoRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := userinfoRE.FindStringSubmatch(m)
		user, _, hasPass := strings.Cut(sub[2], ":")
		if !hasPass {
			return m
		}
		return sub[1] + user + ":xxxxx@"
	})
	return passwordParamRE.ReplaceAllString(out, "${1}xxxxx")
}
