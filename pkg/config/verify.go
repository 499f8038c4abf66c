package config

import "time"

// VerifyConfig configures verification inside the daemon (`cdc verify`
// itself takes flags).
type VerifyConfig struct {
	// Continuous is the background verifier of `cdc run` and `cdc sink`.
	Continuous ContinuousVerifyConfig `koanf:"continuous"`
}

// ContinuousVerifyConfig configures the background verifier: it compares
// documents with their rows at a bounded rate, one collection after
// another and over again, and counts a difference that is still there
// after Recheck (cdc_verify_mismatches_total, alert CDCVerifyMismatch,
// `cdc status`). See pkg/verify's Continuous.
type ContinuousVerifyConfig struct {
	// Rate is the most documents compared per second; each pass over the
	// replicated collections takes about their document count / Rate
	// seconds. It reads MongoDB (a find by _id range) and Postgres (the
	// rows of those documents) at that rate, on connections of its own.
	// 0 turns it off. Default 0.
	Rate int `koanf:"rate"`
	// Recheck is how long a difference waits before it is compared again;
	// only one still there then counts, so a change in flight is never a
	// mismatch. It also bounds how long a comparison waits for the sink to
	// catch up with the MongoDB read (longer: the document is skipped this
	// pass). From 1s to 1h. Default 30s.
	Recheck time.Duration `koanf:"recheck"`
}

// MaxVerifyRate bounds verify.continuous.rate: the verifier is a
// background check, not a second replicator.
const MaxVerifyRate = 100_000

// validateVerify checks the verify section; with the verifier on, a sink
// without the tailer (cdc sink) needs MongoDB too.
func (c *Config) validateVerify(role Role) fieldErrors {
	var errs fieldErrors
	v := c.Verify.Continuous
	if v.Rate < 0 || v.Rate > MaxVerifyRate {
		errs.add("verify.continuous.rate", "must be from 0 (off) to %d documents per second, got %d", MaxVerifyRate, v.Rate)
	}
	if v.Recheck < time.Second || v.Recheck > time.Hour {
		errs.add("verify.continuous.recheck", "must be from 1s to 1h, got %s", v.Recheck)
	}
	if v.Rate > 0 && role&RoleSink != 0 && role&RoleTailer == 0 {
		// cdc run checks these for the tailer already.
		if c.Mongo.URI == "" {
			errs.add("mongo.uri", "is required with verify.continuous.rate > 0: the verifier reads MongoDB (or set CDC_MONGO_URI, or mongo.uri_file)")
		}
		if c.Mongo.Database == "" {
			errs.add("mongo.database", "is required with verify.continuous.rate > 0: the verifier reads MongoDB (or set CDC_MONGO_DATABASE)")
		}
	}
	return errs
}
