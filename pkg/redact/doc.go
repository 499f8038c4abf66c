// Package redact is the one place credentials are removed before a
// connection string, a configuration value or an error message reaches a
// log line, an exit message, a status report or a dead letter.
//
// Three tools, from the most to the least precise:
//
//   - URL (and URLs, its name for comma-separated server lists) masks a
//     connection string the caller holds: a URL, a list of URLs, or a
//     libpq key=value DSN. It never parses with net/url: the strings that
//     most need masking are the ones a parser rejects (a password with an
//     unencoded '/', '?', '#' or '@'), and a parse that "succeeds" on them
//     puts half of the password in the host and the rest in the path. The
//     userinfo is everything up to the LAST '@' of each URL, so an
//     ambiguous string is over-masked, never under-masked.
//   - A Scrubber (New, Scrub, Error) removes the credentials of known
//     connection strings (and bare secrets: a password read from a file,
//     a token, an NKey seed) from arbitrary text, in every spelling a
//     library may echo them (raw, percent-decoded, percent-encoded,
//     Go-quoted), then applies the patterns of Text. Error wraps an error
//     so its message is scrubbed while errors.Is and errors.As still see
//     the original chain; Core wraps a zap core so every entry's message
//     and string, error and stringer fields are scrubbed.
//   - Text masks by pattern only: every scheme://... token in free text
//     (as URL does), key=value and "key":"value" secrets, NATS NKey seeds.
//
// What counts as a credential:
//
//   - the password of a URL's userinfo (user:password@), for every scheme;
//   - the whole user part of a NATS URL without a password
//     (nats://TOKEN@host: nats.go sends a user without a password as an
//     auth token, Conn.connectProto in nats.go);
//   - the value of any query parameter or DSN keyword whose name contains
//     "password", "passwd", "passphrase" or "secret", ends in "token", or
//     is "pass", "pwd", "apikey", "api_key" or "authMechanismProperties"
//     (its value may carry AWS_SESSION_TOKEN; the whole value is masked).
//     That covers libpq's password and sslpassword, the MongoDB driver's
//     tlsCertificateKeyFilePassword, its older spelling
//     sslClientCertificateKeyPassword and authMechanismProperties
//     (go.mongodb.org/mongo-driver v1.17 x/mongo/driver/connstring,
//     ConnString.addOptions);
//   - NATS NKey seeds (S + a type letter + base32), wherever they appear.
//
// A masked value is replaced by Mask. User names, hosts, ports, database
// names and other options stay, so an operator can still tell which
// server an address names; the /readyz bodies, which must not name users
// or hosts at all, are built without connection strings.
package redact
