package cli

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/transforms"
)

// operator is what an operator command (snapshot, replay, verify, dlq,
// position, migrate) works with: the configuration and its logger (setup),
// the mappings and the replicated collections when asked for, and the
// connections opened by connect. close releases everything.
type operator struct {
	cfg config.Config
	log *zap.Logger
	// set is the mappings (loadMappings and above; nil otherwise).
	set *transform.Set
	// replicated are the replicated collections (loadReplicated; nil
	// otherwise).
	replicated []string

	client *mongo.Client
	pool   *pgxpool.Pool
	bus    *app.Bus
	// mongoCloseTimeout, when positive, bounds the MongoDB disconnect at
	// close: a MongoDB that went away must not hold the exit.
	mongoCloseTimeout time.Duration
}

// loads is what setup loads besides the configuration.
type loads int

const (
	// loadConfig: the configuration and its logger only.
	loadConfig loads = iota
	// loadMappings: and the mappings (transforms.Load).
	loadMappings
	// loadReplicated: and the replicated collections
	// (transforms.Collections).
	loadReplicated
)

// setup loads and validates the configuration for role (g.load), then
// what asks for. Unloadable mappings are the operator's input (exit code
// 2); so is a mongo.collections entry without a mapping (a
// config.FieldError). On success the caller defers close.
func (g *globals) setup(role config.Role, what loads) (*operator, error) {
	cfg, log, err := g.load(role)
	if err != nil {
		return nil, err
	}
	op := &operator{cfg: cfg, log: log}
	if what >= loadMappings {
		if op.set, err = transforms.Load(&op.cfg); err != nil {
			_ = log.Sync()
			return nil, &usageError{err}
		}
	}
	if what >= loadReplicated {
		if op.replicated, err = transforms.Collections(&op.cfg, op.set); err != nil {
			_ = log.Sync()
			return nil, err
		}
	}
	return op, nil
}

// systems are the connections connect opens, in this order: MongoDB,
// PostgreSQL, NATS.
type systems struct {
	mongo bool
	// pgConns, when positive, opens a PostgreSQL pool of that many
	// connections.
	pgConns int32
	bus     bool
	// timeout, when positive, bounds connecting to MongoDB and to
	// PostgreSQL, each (verify's --connect-timeout); app.StartupTimeout
	// bounds them anyway.
	timeout time.Duration
}

// connect opens the connections of want (app.ConnectMongo,
// app.ConnectPostgres, openBus). It may be called again for more: a
// command that checks something between two connections opens them one
// by one. What it opened stays open on error; close releases it.
func (o *operator) connect(ctx context.Context, want systems) error {
	bounded := func() (context.Context, context.CancelFunc) {
		if want.timeout > 0 {
			return context.WithTimeout(ctx, want.timeout)
		}
		return ctx, func() {}
	}
	if want.mongo {
		cctx, cancel := bounded()
		client, err := app.ConnectMongo(cctx, o.cfg.Mongo.URI)
		cancel()
		if err != nil {
			return err
		}
		o.client = client
	}
	if want.pgConns > 0 {
		cctx, cancel := bounded()
		pool, err := app.ConnectPostgres(cctx, o.cfg.Postgres.URL, want.pgConns)
		cancel()
		if err != nil {
			return err
		}
		o.pool = pool
	}
	if want.bus {
		b, err := openBus(ctx, o.cfg, o.log)
		if err != nil {
			return err
		}
		o.bus = b
	}
	return nil
}

// close releases the connections, the last opened first, and flushes
// the log. ctx may be cancelled (an interrupted command still closes).
func (o *operator) close(ctx context.Context) {
	if o.bus != nil {
		o.bus.Close()
	}
	if o.pool != nil {
		o.pool.Close()
	}
	if o.client != nil {
		dctx, cancel := context.WithoutCancel(ctx), context.CancelFunc(func() {})
		if o.mongoCloseTimeout > 0 {
			dctx, cancel = context.WithTimeout(dctx, o.mongoCloseTimeout)
		}
		_ = o.client.Disconnect(dctx) // exiting: nothing to do about a failed disconnect
		cancel()
	}
	_ = o.log.Sync() // stderr
}
