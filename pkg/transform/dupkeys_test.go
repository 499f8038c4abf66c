package transform_test

import (
	"fmt"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestDuplicateFieldNamesAreRejected: a key twice in a document level the
// mapping opens (the top level, each sub-document on a column's or a
// child's path, each child element, every depth of a jsonb value) is a
// rejection naming the field's full path and both copies; a duplicate
// inside a sub-document nothing opens never reaches Postgres and is
// accepted.
func TestDuplicateFieldNamesAreRejected(t *testing.T) {
	m := mustParse(t, `{version: 1, collection: payments, table: payments, columns: [
		{column: amount, field: amount, type: "numeric(38,18)"},
		{column: seller_id, field: metadata.sellerId, type: ref, ref: {collection: users, missing: "null"}},
		{column: metadata, field: metadata, type: jsonb},
		{column: city, field: address.geo.city, type: text},
		{column: created_at, field: createdAt, func: created_at, type: timestamptz}],
		children: [
		{table: payment_items, parent_column: payment_id, field: order.items, kind: array, columns: [
			{column: sku, field: sku, type: text},
			{column: price, field: price.amount, type: "numeric(38,18)"}]}]}`)
	d1, d2, d3 := dec(t, "1.00"), dec(t, "1000000.00"), dec(t, "5")
	seller1, seller2 := "65f0ffffffffffffffffff99", "65f000000000000000000002"
	item := func(kv ...bson.E) bson.D { return bson.D(kv) }
	e := func(k string, v any) bson.E { return bson.E{Key: k, Value: v} }
	many := bson.D{}
	for i := 0; i < 40; i++ {
		many = append(many, e(fmt.Sprintf("k%d", i), int32(i)))
	}
	for _, tc := range []struct {
		name string
		doc  bson.D
		// rejected: field, column and value of the rejection
		field, column, value string
		count                int
	}{
		{name: "amount twice (the issue)", doc: bson.D{e("amount", d1), e("amount", d2)},
			field: "amount", column: "amount", value: `{"$numberDecimal":"1.00"} then {"$numberDecimal":"1000000.00"}`, count: 2},
		{name: "amount three times", doc: bson.D{e("amount", d1), e("x", int32(1)), e("amount", d3), e("amount", d2)},
			field: "amount", column: "amount", value: `{"$numberDecimal":"1.00"} then 2 more copies, the last {"$numberDecimal":"1000000.00"}`, count: 3},
		{name: "metadata.sellerId twice (the issue)", doc: bson.D{e("amount", d1), e("metadata", bson.D{e("sellerId", seller1), e("sellerId", seller2)})},
			field: "metadata.sellerId", column: "seller_id", value: `"65f0ffffffffffffffffff99" then "65f000000000000000000002"`, count: 2},
		{name: "metadata twice", doc: bson.D{e("metadata", bson.D{e("sellerId", seller1)}), e("metadata", bson.D{e("sellerId", seller2)})},
			field: "metadata", column: "seller_id", count: 2},
		{name: "deep inside jsonb", doc: bson.D{e("metadata", bson.D{e("quote", bson.D{e("fx", d1), e("fx", d3)})})},
			field: "metadata.quote.fx", column: "metadata", value: `{"$numberDecimal":"1.00"} then {"$numberDecimal":"5"}`, count: 2},
		{name: "inside an array inside jsonb", doc: bson.D{e("metadata", bson.D{e("hist", bson.A{bson.D{e("a", int32(1))}, bson.D{e("b", int32(1)), e("b", int32(2))}})})},
			field: "metadata.hist.1.b", column: "metadata", count: 2},
		{name: "on a column's path", doc: bson.D{e("address", bson.D{e("geo", bson.D{e("city", "Almaty"), e("city", "Astana")})})},
			field: "address.geo.city", column: "city", value: `"Almaty" then "Astana"`, count: 2},
		{name: "a sibling at a level a column opens", doc: bson.D{e("address", bson.D{e("geo", bson.D{e("city", "Almaty")}), e("zip", "1"), e("zip", "2")})},
			field: "address.zip", column: "city", count: 2},
		{name: "a top-level key no column reads", doc: bson.D{e("amount", d1), e("__v", int32(0)), e("__v", int32(1))},
			field: "__v", column: "payments", value: `{"$numberInt":"0"} then {"$numberInt":"1"}`, count: 2},
		{name: "a key a function reads", doc: bson.D{e("createdAt", int32(1)), e("createdAt", int32(2))},
			field: "createdAt", column: "created_at", count: 2},
		{name: "the child's array twice", doc: bson.D{e("order", bson.D{e("items", bson.A{}), e("items", bson.A{item(e("sku", "a"))})})},
			field: "order.items", column: "payment_items", count: 2},
		{name: "in a child element", doc: bson.D{e("order", bson.D{e("items", bson.A{item(e("sku", "a")), item(e("sku", "b"), e("sku", "c"))})})},
			field: "order.items.1.sku", column: "payment_items.sku", value: `"b" then "c"`, count: 2},
		{name: "below a child element", doc: bson.D{e("order", bson.D{e("items", bson.A{item(e("sku", "a"), e("price", bson.D{e("amount", d1), e("amount", d2)}))})})},
			field: "order.items.0.price.amount", column: "payment_items.price", count: 2},
		{name: "an element key no child column reads", doc: bson.D{e("order", bson.D{e("items", bson.A{item(e("sku", "a"), e("note", "x"), e("note", "y"))})})},
			field: "order.items.0.note", column: "payment_items", count: 2},
		{name: "past the small-level limit", doc: append(append(bson.D{}, many...), e("k5", int32(99))),
			field: "k5", column: "payments", value: `{"$numberInt":"5"} then {"$numberInt":"99"}`, count: 2},
		{name: "a large sub-document on a path", doc: bson.D{e("address", append(append(bson.D{}, many...), e("k39", int32(0))))},
			field: "address.k39", column: "city", count: 2},

		// Accepted: nothing opens these sub-documents.
		{name: "inside an unmapped field", doc: bson.D{e("amount", d1), e("client", bson.D{e("ua", "app/1.0"), e("ua", "app/1.1")})}},
		{name: "beside a column's path, one level down", doc: bson.D{e("address", bson.D{e("geo", bson.D{e("city", "Almaty")}), e("other", bson.D{e("k", 1), e("k", 2)})})}},
		{name: "inside an unread part of a child element", doc: bson.D{e("order", bson.D{e("items", bson.A{item(e("sku", "a"), e("extra", bson.D{e("k", 1), e("k", 2)}))})})}},
		{name: "no duplicates in large levels", doc: append(append(bson.D{}, many...), e("address", many), e("metadata", many))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			row, err := m.Row(doc(t, tc.doc))
			if tc.field == "" {
				if err != nil {
					t.Fatalf("rejected a duplicate that never reaches Postgres: %v", err)
				}
				if row == nil {
					t.Fatal("no row")
				}
				return
			}
			rej := rejection(t, err)
			if rej.Field != tc.field || rej.Column != tc.column {
				t.Fatalf("rejection names field %q, column %q; want %q, %q: %+v", rej.Field, rej.Column, tc.field, tc.column, rej)
			}
			if tc.value != "" && rej.Value != tc.value {
				t.Fatalf("value %s, want %s", rej.Value, tc.value)
			}
			want := fmt.Sprintf("duplicate field name: %s appears %d times in the document", tc.field, tc.count)
			if !strings.HasPrefix(rej.Reason, want) || !strings.Contains(rej.Reason, "a column reads the first copy; Mongoose, JavaScript and jsonb the last") {
				t.Fatalf("reason %q does not start with %q and explain the readers", rej.Reason, want)
			}
		})
	}
}
