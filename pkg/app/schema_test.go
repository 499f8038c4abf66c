package app_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/bus/bustest"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/pgtest"
)

// TestSinkRefusesSchemaNotCurrent: a sink started against a database whose
// cdc schema is behind its binary (never migrated) or ahead of it (a newer
// binary migrated it) stops at start-up with the versions named, before it
// reads or writes anything.
func TestSinkRefusesSchemaNotCurrent(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, ctx context.Context, url string)
		want    error
	}{
		{"never migrated", func(*testing.T, context.Context, string) {}, migrate.ErrPending},
		{"migrated by a newer binary", func(t *testing.T, ctx context.Context, url string) {
			if _, err := migrate.Up(ctx, url, zap.NewNop()); err != nil {
				t.Fatal(err)
			}
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, `INSERT INTO `+migrate.VersionTable+` (version_id, is_applied) SELECT max(version_id) + 1, true FROM `+migrate.VersionTable); err != nil {
				t.Fatal(err)
			}
		}, migrate.ErrUnknownVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			url := pgtest.NewDatabase(t)
			tt.prepare(t, ctx, url)
			nc, _ := bustest.Start(t)
			cfg := config.Default()
			cfg.Mongo.Database = "escrow"
			cfg.Mongo.Collections = []string{"users"}
			cfg.Postgres.URL = url
			cfg.NATS.URL = nc.ConnectedUrl()
			cfg.DataDir = filepath.Join(t.TempDir(), "data")
			cfg.HTTP.Addr = ""
			err := app.Run(ctx, cfg, config.RoleSink, zap.NewNop(), app.Options{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("sink start = %v, want %v", err, tt.want)
			}
		})
	}
}
