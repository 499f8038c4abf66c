package migrate_test

import (
	"testing"

	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/pgtest"
)

// TestDeadLetterStreamMigration (00017): cdc.dead_letters gains a
// nullable text column stream; entries recorded before it keep NULL,
// which means the default stream (nats.stream); Down drops it.
func TestDeadLetterStreamMigration(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := pgtest.NewDatabase(t)
	if _, err := migrate.UpTo(ctx, url, 16, zap.NewNop()); err != nil {
		t.Fatalf("UpTo(16): %v", err)
	}
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, `INSERT INTO cdc.dead_letters (event_id, collection, doc_key, stream_seq, error_class, reason, event)
		VALUES ('old', 'users', 'u1', 42, 'poison', 'recorded before 00017', '{}')`); err != nil {
		t.Fatal(err)
	}
	res, err := migrate.Up(ctx, url, zap.NewNop())
	if err != nil || len(res) != int(latest(t)-16) || res[0].Version != 17 {
		t.Fatalf("Up from 16 = %v, %v", res, err)
	}
	var typ, nullable string
	if err := conn.QueryRow(ctx, `SELECT data_type, is_nullable FROM information_schema.columns
		WHERE table_schema = 'cdc' AND table_name = 'dead_letters' AND column_name = 'stream'`).Scan(&typ, &nullable); err != nil {
		t.Fatalf("column cdc.dead_letters.stream: %v", err)
	}
	if typ != "text" || nullable != "YES" {
		t.Fatalf("cdc.dead_letters.stream is %s, nullable %s; want text, YES", typ, nullable)
	}
	var stream *string
	var seq int64
	if err := conn.QueryRow(ctx, `SELECT stream, stream_seq FROM cdc.dead_letters WHERE event_id = 'old'`).Scan(&stream, &seq); err != nil {
		t.Fatal(err)
	}
	if stream != nil {
		t.Fatalf("the existing entry has stream %q, want NULL (the default stream)", *stream)
	}
	if seq != 42 {
		t.Fatalf("the existing entry has sequence %d, want 42", seq)
	}
	if _, err := migrate.DownTo(ctx, url, 16, zap.NewNop()); err != nil {
		t.Fatalf("DownTo(16): %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns
		WHERE table_schema = 'cdc' AND table_name = 'dead_letters' AND column_name = 'stream'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after DownTo(16): %d stream columns (%v), want none", n, err)
	}
}
