package app

import (
	"context"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/metrics"
	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/pkg/verify"
)

// verifyMaxConns is the continuous verifier's own Postgres pool: it never
// takes the sink's connections, and one read at a time is all it does.
const verifyMaxConns = 2

// startVerifier starts the continuous verifier in g when
// verify.continuous.rate is on (a sink process; its counters exist, at 0,
// on every sink process). It connects to MongoDB and Postgres itself,
// within StartupTimeout (a failure is a start-up error, like the other
// parts'); once running, its failures are logged and retried: verification
// never stops the replicator. The connections close when it returns.
func startVerifier(ctx, gctx context.Context, g *errgroup.Group, cfg *config.Config, set *transform.Set, colls []string,
	met *metrics.Metrics, log *zap.Logger) error {
	vm := met.ForVerify(colls, verify.ContinuousChecks)
	vc := cfg.Verify.Continuous
	if vc.Rate == 0 {
		return nil
	}
	client, err := ConnectMongo(ctx, cfg.Mongo.URI)
	if err != nil {
		return err
	}
	pool, err := ConnectPostgres(ctx, cfg.Postgres.URL, verifyMaxConns)
	if err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return err
	}
	cv, err := verify.NewContinuous(client, pool, set, verify.ContinuousConfig{
		Database: cfg.Mongo.Database, Collections: colls, Consumer: cfg.Sink.Consumer, LaneConsumers: LaneConsumers(cfg),
		Rate: vc.Rate, Recheck: vc.Recheck,
	}, vm, log.Named("verify"))
	if err != nil {
		pool.Close()
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return err
	}
	g.Go(func() error {
		defer client.Disconnect(context.WithoutCancel(gctx)) //nolint:errcheck // shutting down
		defer pool.Close()
		return cv.Run(gctx)
	})
	return nil
}
