package state_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/state"
)

func TestOpenDeadLetterCounts(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	if got, err := state.OpenDeadLetterCounts(d.ctx, d.pool); err != nil || len(got) != 0 {
		t.Fatalf("none: %v, %v", got, err)
	}
	d.record(dl("a", "payments", "p1", 10, 0, 0, false), dl("b", "payments", "p2", 11, 0, 0, false),
		dl("c", "payments", "p3", 12, 7, 0, true), dl("d", "orders", "o1", 13, 0, 0, false), dl("e", "orders", "o2", 14, 0, 0, false))
	d.exec(`UPDATE cdc.dead_letters SET status = 'dropped' WHERE event_id = 'e'`)
	got, err := state.OpenDeadLetterCounts(d.ctx, d.pool)
	if err != nil {
		t.Fatal(err)
	}
	want := []state.OpenDeadLetterCount{
		{Collection: "orders", Class: state.ClassRejected, Count: 1},
		{Collection: "payments", Class: state.ClassPoison, Count: 1},
		{Collection: "payments", Class: state.ClassRejected, Count: 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("counts %+v, want %+v", got, want)
	}
}

func TestDocVersionCounts(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	if got, err := state.DocVersionCounts(d.ctx, d.pool); err != nil || len(got) != 0 {
		t.Fatalf("none: %v, %v", got, err)
	}
	d.advance(ver("users", "u1", pos(10, 0), false), ver("users", "u2", pos(11, 0), true), ver("users", "u3", pos(12, 0), false),
		ver("payments", "p1", pos(13, 0), true))
	got, err := state.DocVersionCounts(d.ctx, d.pool)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]state.VersionCounts{"users": {Live: 2, Tombstones: 1}, "payments": {Live: 0, Tombstones: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
}

// TestFenceHeld: the lock shows while an instance holds the fence, for
// that consumer only, and not after Release (the row keeps the owner).
// The consumers include one whose hashtext is negative (the lock key as
// an oid wraps around).
func TestFenceHeld(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	connect := func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, d.pool.Config().ConnString()) }
	var neg, nonNeg string
	for i := 0; neg == "" || nonNeg == ""; i++ {
		name := fmt.Sprintf("sink-%d", i)
		var h int32
		if err := d.pool.QueryRow(d.ctx, `SELECT hashtext($1)`, name).Scan(&h); err != nil {
			t.Fatal(err)
		}
		if h < 0 && neg == "" {
			neg = name
		} else if h >= 0 && nonNeg == "" {
			nonNeg = name
		}
	}
	for _, consumer := range []string{neg, nonNeg} {
		t.Run(consumer, func(t *testing.T) {
			held := func() bool {
				t.Helper()
				h, err := state.FenceHeld(d.ctx, d.pool, consumer)
				if err != nil {
					t.Fatal(err)
				}
				return h
			}
			if held() {
				t.Fatal("held before anyone took it")
			}
			f, _, err := state.AcquireFence(d.ctx, connect, consumer, "CDC", "one", 0)
			if err != nil {
				t.Fatal(err)
			}
			if !held() {
				t.Fatal("not held while an instance holds it")
			}
			if h, err := state.FenceHeld(d.ctx, d.pool, consumer+"-other"); err != nil || h {
				t.Fatalf("another consumer: held %v, %v", h, err)
			}
			f.Release(d.ctx)
			// The server ends the closed session (and its lock) shortly
			// after the client closed it.
			for deadline := time.Now().Add(10 * time.Second); held(); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("still held 10s after Release")
				}
			}
			p, ok, err := state.ReadPosition(d.ctx, d.pool, consumer)
			if err != nil || !ok || p.Owner != "one" || p.Epoch != 1 {
				t.Fatalf("position after Release: %+v %v %v", p, ok, err)
			}
		})
	}
}
