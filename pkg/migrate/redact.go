package migrate

import "github.com/amanat/cdc/pkg/redact"

// RedactURL returns a PostgreSQL connection string fit for logs and error
// messages, its password replaced by xxxxx. It is redact.URL, the project's
// one implementation, re-exported under the name this package documents;
// new code can call redact.URL directly.
func RedactURL(raw string) string { return redact.URL(raw) }
