package sink_test

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zapcore"
)

type pgxConn = pgx.Conn

func connectPG(ctx context.Context, pool *pgxpool.Pool) (*pgx.Conn, error) {
	return pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
}

func zapCoreTee(cores ...zapcore.Core) zapcore.Core { return zapcore.NewTee(cores...) }
