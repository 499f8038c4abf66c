package verify

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func dec(t *testing.T, s string) bson.Decimal128 {
	t.Helper()
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// brokenDecimals is the converter of a broken sink: it reads Decimal128
// the way the issue found it read (through float64 for ordinary values,
// through the driver's BigInt for a non-canonical coefficient, which
// turns 0 into a large number) and hands the transform that text. The
// transform, and verify's call of it, then agree with the broken value.
func brokenDecimals(m *transform.Mapping, raw bson.Raw) (*transform.Row, error) {
	var d bson.D
	if err := bson.Unmarshal(raw, &d); err != nil {
		return nil, err
	}
	var breakValue func(v any) any
	breakValue = func(v any) any {
		switch x := v.(type) {
		case bson.Decimal128:
			if bi, exp, err := x.BigInt(); err == nil && new(big.Int).Abs(bi).Cmp(maxCoefficient) > 0 {
				return bigText(bi, exp)
			}
			f, err := strconv.ParseFloat(x.String(), 64)
			if err != nil {
				return v
			}
			return strconv.FormatFloat(f, 'f', -1, 64)
		case bson.D:
			for i := range x {
				x[i].Value = breakValue(x[i].Value)
			}
			return x
		case bson.A:
			for i := range x {
				x[i] = breakValue(x[i])
			}
			return x
		}
		return v
	}
	b, err := bson.Marshal(breakValue(d))
	if err != nil {
		return nil, err
	}
	return m.Row(b)
}

// bigText renders bi × 10^exp in plain notation.
func bigText(bi *big.Int, exp int) string {
	s := bi.String()
	if exp >= 0 {
		return s + strings.Repeat("0", exp)
	}
	for len(s) <= -exp {
		s = "0" + s
	}
	return s[:len(s)+exp] + "." + s[len(s)+exp:]
}

// nonCanonical is the Decimal128 of issue 14 item 4: coefficient 2^113 - 1
// (over 10^34 - 1, so the value is 0) at exponent -18.
func nonCanonical() bson.Decimal128 {
	return bson.NewDecimal128(uint64(decimal128Bias-18)<<49|(1<<49-1), math.MaxUint64)
}

// TestIndependentVerify (issue 14, acceptance 2): verify decodes money
// itself, so a sink whose decimal conversion is broken (its converter
// injected into the test sink and into the transform verify runs) is
// reported with the exact values; a stray id_map entry and an unknown
// enum value are reported; a time zone shift and a sub-millisecond
// difference in a timestamp are reported; and the exact replica passes.
func TestIndependentVerify(t *testing.T) {
	w := newWorld(t)
	at := time.Date(2024, 3, 16, 10, 5, 0, 123_000_000, time.UTC)
	owner := bson.NewObjectID()
	docs := map[string]bson.Raw{}
	add := func(name string, d bson.D) {
		docs[name] = w.insert(d)
	}
	precise := bson.NewObjectID()
	add("precise", bson.D{{Key: "_id", Value: precise}, {Key: "balance", Value: dec(t, "12345678.123456789012345678")},
		{Key: "wei", Value: "115792089237316195423570985008687907853269984665640564039457584007913129639935"},
		{Key: "status", Value: "open"}, {Key: "ownerId", Value: owner}, {Key: "openedAt", Value: bson.NewDateTimeFromTime(at)},
		{Key: "moves", Value: bson.A{
			bson.D{{Key: "amount", Value: dec(t, "1.000000000000000001")}, {Key: "at", Value: bson.NewDateTimeFromTime(at)}},
			bson.D{{Key: "amount", Value: dec(t, "250.50")}},
		}}})
	plain := bson.NewObjectID()
	add("plain", bson.D{{Key: "_id", Value: plain}, {Key: "balance", Value: dec(t, "1099.990000000000000000")},
		{Key: "status", Value: "frozen"}, {Key: "openedAt", Value: bson.NewDateTimeFromTime(at.Add(time.Hour))}, {Key: "moves", Value: bson.A{}}})
	zero := bson.NewObjectID()
	add("non-canonical zero", bson.D{{Key: "_id", Value: zero}, {Key: "balance", Value: nonCanonical()}, {Key: "status", Value: "open"}})

	exact := (*transform.Mapping).Row
	// What the exact sink writes for the non-canonical value is 0 (the
	// server's reading); the transform's own reading of it is not what is
	// tested here.
	exactSink := func(m *transform.Mapping, raw bson.Raw) (*transform.Row, error) {
		if raw.Lookup("_id").ObjectID() == zero {
			d := bson.D{{Key: "_id", Value: zero}, {Key: "balance", Value: dec(t, "0")}, {Key: "status", Value: "open"}}
			b, _ := bson.Marshal(d)
			return m.Row(b)
		}
		return exact(m, raw)
	}
	for _, raw := range docs {
		w.apply(raw, exactSink)
	}
	w.caughtUp()

	t.Run("exact replica passes", func(t *testing.T) {
		w.t = t
		rep := w.verify(exactSink)
		if !rep.OK {
			t.Fatalf("verify failed on an exact replica (%s):\n%s", failing(rep), reportText(rep))
		}
		if c := check(rep, "accounts", checkDiff); c.Counts["compared"] != 3 {
			t.Fatalf("compared %d documents, want 3", c.Counts["compared"])
		}
	})

	t.Run("broken decimal converter", func(t *testing.T) {
		w.t = t
		// Compared through the transform, as verify used to, the broken
		// rows would pass: the transform verify runs says the same.
		row, err := brokenDecimals(w.m, docs["precise"])
		if err != nil || row.Values[0] != "12345678.12345679" {
			t.Fatalf("the broken converter makes %+v (%v) of the precise document", row, err)
		}
		for _, raw := range docs {
			w.apply(raw, brokenDecimals)
		}
		w.caughtUp()
		rep := w.verify(brokenDecimals)
		if got := failing(rep); got != "[accounts/document_diff accounts/money_sums]" {
			t.Fatalf("failing %s, want document_diff and money_sums:\n%s", got, reportText(rep))
		}
		diff := check(rep, "accounts", checkDiff)
		if diff.Mismatches != 2 {
			t.Fatalf("%d documents differ, want the precise one and the non-canonical zero:\n%s", diff.Mismatches, reportText(rep))
		}
		want := map[string]Example{
			precise.Hex(): {Column: "balance", Mongo: "12345678.123456789012345678", Postgres: "12345678.12345679"},
			zero.Hex():    {Column: "balance", Mongo: "0", Postgres: "10384593717069655.257060992658440191"},
		}
		for _, ex := range diff.Examples {
			w, ok := want[ex.ID]
			if !ok || ex.Column != w.Column || ex.Mongo != w.Mongo || ex.Postgres != w.Postgres {
				t.Errorf("example %+v; want %+v", ex, w)
			}
			if ex.ID == precise.Hex() && !strings.Contains(ex.Detail, "account_moves") {
				t.Errorf("the child row's amount (1.000000000000000001 stored as 1) is not named: %s", ex.Detail)
			}
		}
	})

	t.Run("timestamps to the millisecond in UTC", func(t *testing.T) {
		w.t = t
		for _, raw := range docs {
			w.apply(raw, exactSink)
		}
		w.caughtUp()
		w.exec(`UPDATE accounts SET opened_at = opened_at + interval '6 hours' WHERE id = (SELECT new_id FROM id_map WHERE legacy_object_id = $1)`, precise.Hex())
		w.exec(`UPDATE accounts SET opened_at = opened_at + interval '1 microsecond' WHERE id = (SELECT new_id FROM id_map WHERE legacy_object_id = $1)`, plain.Hex())
		rep := w.verify(exactSink)
		diff := check(rep, "accounts", checkDiff)
		if diff.Mismatches != 2 {
			t.Fatalf("%d documents differ, want 2:\n%s", diff.Mismatches, reportText(rep))
		}
		for _, ex := range diff.Examples {
			hint := map[string]string{precise.Hex(): "off by 6h0m0s (a time zone", plain.Hex(): "off by 1µs, below the millisecond"}[ex.ID]
			if ex.Column != "opened_at" || hint == "" || !strings.Contains(ex.Detail, hint) {
				t.Errorf("example %+v does not say %q", ex, hint)
			}
		}
		w.exec(`UPDATE accounts SET opened_at = opened_at - interval '6 hours' WHERE id = (SELECT new_id FROM id_map WHERE legacy_object_id = $1)`, precise.Hex())
		w.exec(`UPDATE accounts SET opened_at = opened_at - interval '1 microsecond' WHERE id = (SELECT new_id FROM id_map WHERE legacy_object_id = $1)`, plain.Hex())
	})

	t.Run("stray id_map entry", func(t *testing.T) {
		w.t = t
		stray := bson.NewObjectID().Hex()
		w.exec(`INSERT INTO id_map (collection, legacy_object_id, new_id) VALUES ('accounts', $1, gen_random_uuid())`, stray)
		// A deleted document keeps its mapping and has a tombstone: not
		// stray.
		gone := bson.NewObjectID()
		raw := w.insert(bson.D{{Key: "_id", Value: gone}, {Key: "balance", Value: dec(t, "5")}})
		w.apply(raw, exact)
		if _, err := w.coll().DeleteOne(w.ctx, bson.D{{Key: "_id", Value: gone}}); err != nil {
			t.Fatal(err)
		}
		w.exec(`DELETE FROM accounts WHERE id = (SELECT new_id FROM id_map WHERE legacy_object_id = $1)`, gone.Hex())
		if _, err := state.AdvanceVersions(w.ctx, w.pool, []state.Version{{Doc: state.DocRef{Collection: "accounts", Key: gone.Hex()},
			Position: event.Position{ClusterTime: w.now()}, Deleted: true}}); err != nil {
			t.Fatal(err)
		}
		w.caughtUp()
		rep := w.verify(exactSink)
		if got := failing(rep); got != "[accounts/idmap_stray]" {
			t.Fatalf("failing %s, want only idmap_stray:\n%s", got, reportText(rep))
		}
		c := check(rep, "accounts", checkStray)
		if c.Mismatches != 1 || c.Examples[0].ID != stray || c.Examples[0].PGID == "" || c.Counts["entries"] != 5 {
			t.Fatalf("stray check: %+v", c)
		}
		w.exec(`DELETE FROM id_map WHERE legacy_object_id = $1`, stray)
	})

	t.Run("unknown enum value", func(t *testing.T) {
		w.t = t
		// The sink dead-letters this document; Postgres lacks it.
		w.insert(bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "balance", Value: dec(t, "1")}, {Key: "status", Value: "suspended"}})
		w.caughtUp()
		rep := w.verify(exactSink)
		c := check(rep, "accounts", checkEnums)
		if c.Status != StatusFail || c.Mismatches != 1 {
			t.Fatalf("enum check %+v:\n%s", c, reportText(rep))
		}
		ex := c.Examples[0]
		if ex.Column != "status" || ex.Mongo != "suspended" || !strings.Contains(ex.Detail, "no label") || !strings.Contains(ex.Detail, "closed, frozen, open") {
			t.Fatalf("unknown value not named: %+v", ex)
		}
		if c.Counts["values"] != 3 { // open, frozen, suspended
			t.Fatalf("%d distinct values counted, want 3", c.Counts["values"])
		}
	})
}
