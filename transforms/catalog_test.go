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
		{"enum label the type lacks", `{version: 1, collection: payments, table: payments, columns: [{column: provider, field: provider, type: enum, required: true, values: {paypal: paypal, request.network: request_network}}]}`, `field provider -> column payments.provider: value "paypal" maps to "paypal", which enum payment_provider does not have`},
		{"wrong enum type", `{version: 1, collection: payments, table: payments, columns: [{column: status, field: status, type: enum, enum_type: escrow_state, required: true, labels: [pending]}]}`, "needs enum escrow_state"},
		{"NOT NULL column mapped as optional", `{version: 1, collection: payments, table: payments, columns: [{column: amount, field: amount, type: "numeric(38,18)"}]}`, "field amount -> column payments.amount: column is NOT NULL; mark the field required"},
		{"NOT NULL reference with policy null", `{version: 1, collection: sellerOffers, table: seller_offers, columns: [{column: seller_id, field: sellerId, type: ref, required: true, ref: {collection: users, missing: "null"}}]}`, "column is NOT NULL, so ref.missing cannot be null"},
		{"NOT NULL column nobody maps", `{version: 1, collection: payments, table: payments, columns: [{column: currency, field: currency, type: text, required: true}]}`, "column payments.amount is NOT NULL without a default and no field maps to it"},
		{"child table missing", prChild(`{table: purchase_request_ghosts, parent_column: purchase_request_id, field: ghosts, kind: array, columns: [{column: a, field: a, type: text}]}`), "table purchase_request_ghosts does not exist"},
		{"child column missing", prChild(`{table: purchase_request_specifications, parent_column: purchase_request_id, field: specifications, kind: array, columns: [{column: ordinal, field: $index, type: int}, {column: name, field: name, type: text, required: true}, {column: unit, field: unit, type: text}]}`), "field specifications.unit -> column purchase_request_specifications.unit: column does not exist"},
		{"child column wrong type", prChild(`{table: purchase_request_specifications, parent_column: purchase_request_id, field: specifications, kind: array, columns: [{column: ordinal, field: $index, type: int}, {column: name, field: name, type: bool, required: true}]}`), "field specifications.name -> column purchase_request_specifications.name: column is text, mapping type bool needs boolean"},
		{"child NOT NULL column unmapped", prChild(`{table: purchase_request_specifications, parent_column: purchase_request_id, field: specifications, kind: array, columns: [{column: ordinal, field: $index, type: int}, {column: value, field: value, type: text}]}`), "column purchase_request_specifications.name is NOT NULL without a default and no field maps to it"},
		{"child enum label missing", prChild(`{table: purchase_request_delivery_info, parent_column: purchase_request_id, field: deliveryInfo, kind: document, columns: [{column: id, field: $root._id, type: ref, required: true, ref: {collection: purchaseRequests, missing: mint}}, {column: status, field: status, type: enum, default: pending, labels: [pending, teleported]}]}`), `field deliveryInfo.status -> column purchase_request_delivery_info.status: value "teleported" maps to "teleported", which enum delivery_status does not have`},
		{"child parent column missing", prChild(`{table: purchase_request_specifications, parent_column: request_id, field: specifications, kind: array, columns: [{column: ordinal, field: $index, type: int}, {column: name, field: name, type: text, required: true}]}`), "child specifications: parent_column purchase_request_specifications.request_id does not exist"},
		{"child parent column not uuid", prChild(`{table: purchase_request_specifications, parent_column: name, field: specifications, kind: array, columns: [{column: ordinal, field: $index, type: int}]}`), "parent_column purchase_request_specifications.name is text, the parent id is uuid"},
		{"child NOT NULL column optional", prChild(`{table: purchase_request_specifications, parent_column: purchase_request_id, field: specifications, kind: array, columns: [{column: ordinal, field: $index, type: int}, {column: name, field: name, type: text}]}`), "field specifications.name -> column purchase_request_specifications.name: column is NOT NULL; mark the field required"},
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

// prChild is a purchase-request mapping with one child.
func prChild(child string) string {
	return `{version: 1, collection: purchaseRequests, table: purchase_requests, columns: [
		{column: buyer_id, field: buyerId, type: ref, required: true, ref: {collection: users, missing: wait}},
		{column: title, field: title, type: text, required: true}], children: [` + child + `]}`
}
