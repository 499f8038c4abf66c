package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/pgtest"
)

// TestMigrateAdoptCommand drives cdc migrate on the application's
// database (pkg/migrate/testdata/app_schema.sql, the audit's defects):
// --plan changes nothing, the adoption is refused without --widen (its
// numeric(18,8) would round amounts) with the difference named and exit 1,
// and goes through with it; then there is nothing left to do.
func TestMigrateAdoptCommand(t *testing.T) {
	cluster, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { cluster.Close() })
	url := cluster.NewDatabase(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	schema, err := os.ReadFile(filepath.Join("..", "migrate", "testdata", "app_schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, string(schema)); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "cdc.yaml")
	if err := os.WriteFile(cfgPath, []byte("postgres:\n  url: "+url+"\nlog:\n  level: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := Main(append([]string{"-c", cfgPath}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	cdcSchema := func() bool {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'cdc'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	code, out, errOut := run("migrate", "--plan")
	if code != ExitFailed || !strings.HasPrefix(out, "Adoption: ") || !strings.Contains(out, "seller_offers.price_amount [money]") ||
		!strings.Contains(errOut, "cannot be adopted safely") {
		t.Fatalf("migrate --plan without --widen: exit %d, want %d with the refusal\nstdout:\n%s\nstderr:\n%s", code, ExitFailed, out, errOut)
	}
	code, out, errOut = run("migrate", "--plan", "--widen")
	if code != ExitOK || !strings.Contains(out, "ALTER TABLE seller_offers ALTER COLUMN price_amount TYPE numeric(38,18);") ||
		!strings.Contains(out, "CREATE INDEX CONCURRENTLY idx_so_seller_status ON seller_offers") {
		t.Fatalf("migrate --plan --widen: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if cdcSchema() {
		t.Fatal("--plan created schema cdc")
	}

	code, out, errOut = run("migrate")
	if code != ExitFailed || !strings.Contains(errOut, "seller_offers.price_amount [money]") || !strings.Contains(errOut, "--widen") {
		t.Fatalf("migrate without --widen: exit %d, want %d naming the column\nstdout:\n%s\nstderr:\n%s", code, ExitFailed, out, errOut)
	}
	if cdcSchema() {
		t.Fatal("a refused adoption created schema cdc")
	}

	code, out, errOut = run("migrate", "--widen")
	if code != ExitOK || !strings.Contains(out, "adopted the existing tables: ") ||
		!strings.Contains(out, "recorded 00005 00005_marketplace.sql (adopted") || !strings.Contains(out, "applied 00011 00011_foreign_keys.sql") {
		t.Fatalf("migrate --widen: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, errOut = run("migrate")
	if code != ExitOK || out != "schema is up to date\n" {
		t.Fatalf("migrate after the adoption: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, _ = run("migrate", "--plan")
	if code != ExitOK || out != "Nothing to do: the schema is up to date.\n" {
		t.Fatalf("migrate --plan after the adoption: exit %d\nstdout:\n%s", code, out)
	}
}
