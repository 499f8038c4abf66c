package cli

import (
	"os"
	"strings"

	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/redact"
)

// configScrubber removes the credentials of cfg (its three connection
// strings, the NATS password and token, read from their files already)
// and those of the environment from text; see envCredentials.
func configScrubber(cfg *config.Config) *redact.Scrubber {
	conns, secrets := envCredentials()
	conns = append(conns, cfg.Mongo.URI, cfg.Postgres.URL, cfg.NATS.URL)
	secrets = append(secrets, cfg.NATS.Auth.Password, cfg.NATS.Auth.Token)
	return redact.New(conns...).WithSecrets(secrets...)
}

// scrubber is the loaded configuration's scrubber, or, before (or
// without) a configuration, one for the credentials in the environment.
func (g *globals) scrubber() *redact.Scrubber {
	if g.scrub != nil {
		return g.scrub
	}
	conns, secrets := envCredentials()
	return redact.New(conns...).WithSecrets(secrets...)
}

// envCredentials are the CDC_* environment values that may hold a
// credential: connection strings (values with "://", "=" or "@") and
// bare secrets (variables named like a password, token, secret or seed).
// *_FILE variables name files, not secrets.
func envCredentials() (conns, secrets []string) {
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "CDC_") || v == "" || strings.HasSuffix(k, "_FILE") {
			continue
		}
		upper := strings.ToUpper(k)
		switch {
		case strings.Contains(upper, "PASSWORD"), strings.Contains(upper, "TOKEN"),
			strings.Contains(upper, "SECRET"), strings.Contains(upper, "SEED"):
			secrets = append(secrets, v)
		case strings.Contains(v, "://"), strings.Contains(v, "="), strings.Contains(v, "@"):
			conns = append(conns, v)
		}
	}
	return conns, secrets
}
