package transforms_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/pgtest"
	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/transforms"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, pgtest.Options{})) }

func migrated(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	if _, err := migrate.Up(ctx, url, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestBuiltinMatchesSchema: every shipped mapping fits the shipped schema.
func TestBuiltinMatchesSchema(t *testing.T) {
	set, err := transform.Load(transforms.Builtin, ".")
	if err != nil {
		t.Fatal(err)
	}
	if err := transform.CheckCatalog(context.Background(), migrated(t), set); err != nil {
		t.Fatal(err)
	}
}

// TestCatalogMismatchNamesTheProblem: a mapping that does not fit the live
// schema is refused with the mapping, the field and the column named.
func TestCatalogMismatchNamesTheProblem(t *testing.T) {
	pool := migrated(t)
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"missing column", `{version: 1, collection: users, table: users, columns: [{column: nickname, field: nick, type: text}, {column: created_at, field: createdAt, type: timestamptz}, {column: updated_at, field: updatedAt, type: timestamptz}]}`, "field nick -> column users.nickname: column does not exist"},
		{"wrong type", `{version: 1, collection: users, table: users, columns: [{column: email, field: email, type: bool}]}`, "field email -> column users.email: column is text"},
		{"narrower numeric", `{version: 1, collection: users, table: users, columns: [{column: points_total, field: points.total, type: "numeric(78,0)"}]}`, "cannot hold every numeric(78,0)"},
		{"missing table", `{version: 1, collection: ghosts, table: ghosts, columns: [{column: a, field: a, type: text}]}`, "table ghosts does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := transform.Parse([]byte(tc.yaml), tc.name+".yaml")
			if err != nil {
				t.Fatal(err)
			}
			set, err := transform.NewSet(m)
			if err != nil {
				t.Fatal(err)
			}
			err = transform.CheckCatalog(context.Background(), pool, set)
			if !errors.Is(err, transform.ErrSchemaMismatch) {
				t.Fatalf("want ErrSchemaMismatch, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.name+".yaml") {
				t.Fatalf("error does not name the problem (%q):\n%v", tc.want, err)
			}
		})
	}
}
