// Package dial opens the replicator's database connections: a MongoDB
// client and a PostgreSQL pool, each pinged before it is returned. The
// replicator (pkg/app), the operator commands (pkg/cli) and status all
// connect here, so a connection is configured one way: the application
// name the server sees, the bounds on the first answer, what is retried,
// and errors that never quote a credential.
//
// Callers choose the settings that differ between a long-running daemon
// and a short-lived probe (MongoOptions, PostgresOptions); they phrase the
// failure for their own output from *Error (Stage and the driver's error).
// NATS connections are pkg/bus's (bus.Connect).
package dial

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// MongoOptions configure Mongo.
type MongoOptions struct {
	// AppName is the client's application name (the server logs it and
	// lists it in currentOp).
	AppName string
	// Timeout bounds the ping that proves the primary answers.
	Timeout time.Duration
	// DriverTimeout, when positive, is also the driver's server selection
	// and connect timeout, for every later operation too: a probe that
	// reads once should give up on a server as fast as on the ping. 0
	// keeps the driver's defaults (30 s each), which a daemon rides an
	// election out with.
	DriverTimeout time.Duration
}

// Mongo connects to uri and pings the primary within o.Timeout. On
// failure it returns an *Error (StageParse: uri is unusable; StagePing:
// no primary answered) and no client; the client it returns is the
// caller's to Disconnect.
func Mongo(ctx context.Context, uri string, o MongoOptions) (*mongo.Client, error) {
	co := options.Client().ApplyURI(uri).SetAppName(o.AppName)
	if o.DriverTimeout > 0 {
		co = co.SetServerSelectionTimeout(o.DriverTimeout).SetConnectTimeout(o.DriverTimeout)
	}
	client, err := mongo.Connect(co)
	if err != nil {
		// mongo.Connect dials nothing: its errors are the URI's or the
		// options'.
		return nil, newError(StageParse, err, uri)
	}
	pctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := client.Ping(pctx, readpref.Primary()); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, newError(StagePing, err, uri)
	}
	return client, nil
}

// PostgresOptions configure Postgres.
type PostgresOptions struct {
	// AppName is the connections' application_name (pg_stat_activity).
	AppName string
	// MaxConns bounds the pool.
	MaxConns int32
	// Timeout bounds the ping that proves the server answers (its
	// retries included).
	Timeout time.Duration
	// ConnectTimeout, when positive, bounds each connection attempt
	// (pgx's connect_timeout), later ones too; 0 keeps the URL's.
	ConnectTimeout time.Duration
	// ReadOnly makes every transaction of the pool read-only
	// (default_transaction_read_only): for a command that only reads.
	ReadOnly bool
	// RetryUnless, when set, has a failed ping tried again every
	// RetryInterval until Timeout, unless RetryUnless(err) reports that
	// the failure will repeat (a certificate or an identity refused).
	// nil: one ping.
	RetryUnless func(error) bool
}

// RetryInterval is the pause between two pings of Postgres with
// PostgresOptions.RetryUnless.
const RetryInterval = 500 * time.Millisecond

// Postgres opens a pool on url and pings it within o.Timeout. On failure
// it returns an *Error (StageParse: url is unusable; StageOpen: the pool
// could not be created; StagePing: the server did not answer or refused)
// and no pool; the pool it returns is the caller's to Close.
func Postgres(ctx context.Context, url string, o PostgresOptions) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The cause alone (pgx's message repeats the string), or the
		// whole error when it has none.
		cause := errors.Unwrap(err)
		if cause == nil {
			cause = err
		}
		return nil, newError(StageParse, cause, url)
	}
	pcfg.MaxConns = o.MaxConns
	// Each statement is planned with its arguments (an unnamed prepared
	// statement; pgx caches only its description). The default mode
	// prepares named statements, whose plan Postgres caches as a generic
	// plan after five runs: a plan made while the sink's tables were empty
	// was then kept as they grew, and for the child-set deletes it
	// re-parsed the batch's whole key array for every row it scanned
	// (25 ms to 290 ms a batch in the money-core benchmark, growing with
	// the table). A custom plan sees the batch's keys as a constant (a
	// hashed lookup) and the table's size now. Planning costs a fraction
	// of a millisecond per statement, a few dozen statements per batch.
	// The foreign-key checks Postgres runs itself keep their own cached
	// plans (a server-wide plan_cache_mode would re-plan each of them).
	pcfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	if o.ConnectTimeout > 0 {
		pcfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = o.AppName
	if o.ReadOnly {
		pcfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, newError(StageOpen, err, url)
	}
	pctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	for {
		err = pool.Ping(pctx)
		if err == nil {
			return pool, nil
		}
		if o.RetryUnless == nil || o.RetryUnless(err) {
			pool.Close()
			return nil, newError(StagePing, err, url)
		}
		select {
		case <-pctx.Done():
			pool.Close()
			return nil, newError(StagePing, err, url)
		case <-time.After(RetryInterval):
		}
	}
}
