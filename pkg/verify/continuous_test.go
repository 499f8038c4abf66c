package verify

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// fakeMetrics records what a Continuous verifier reports.
type fakeMetrics struct {
	mu         sync.Mutex
	checked    map[string]int
	mismatches map[string]int // collection/check
}

func newFakeMetrics() *fakeMetrics {
	return &fakeMetrics{checked: map[string]int{}, mismatches: map[string]int{}}
}

func (f *fakeMetrics) Checked(coll string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checked[coll] += n
}

func (f *fakeMetrics) Mismatch(coll, check string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mismatches[coll+"/"+check]++
}

func (f *fakeMetrics) snapshot() (checked int, mismatches map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]int{}
	for k, v := range f.mismatches {
		m[k] = v
	}
	return f.checked["accounts"], m
}

// eventually polls cond until it returns "" or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		msg := cond()
		if msg == "" {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s: %s", what, within, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestContinuous: the background verifier walks the collection over and
// over at its rate; a document in flight for longer than the recheck (the
// sink behind) is never a mismatch; a 1E-18 change made behind the
// replicator's back is counted, once the recheck confirms it, and
// recorded for cdc status; a collection that empties and fills again is
// walked again; Run ends when its context does.
func TestContinuous(t *testing.T) {
	w := newWorld(t)
	var ids []bson.ObjectID
	for i := range 40 {
		id := bson.NewObjectID()
		ids = append(ids, id)
		raw := w.insert(bson.D{{Key: "_id", Value: id}, {Key: "balance", Value: dec(t, fmt.Sprintf("%d.000000000000000001", i+1))},
			{Key: "status", Value: "open"}, {Key: "moves", Value: bson.A{bson.D{{Key: "amount", Value: dec(t, "0.5")}}}}})
		w.apply(raw, (*transform.Mapping).Row)
	}
	w.caughtUp()
	met := newFakeMetrics()
	const recheck = time.Second
	cv, err := NewContinuous(w.client, w.pool, w.set, ContinuousConfig{Database: w.db, Collections: []string{"accounts"},
		Rate: 400, Recheck: recheck, ChunkSize: 10, RetryAfter: 100 * time.Millisecond}, met, w.log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(w.ctx)
	done := make(chan error, 1)
	go func() { done <- cv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	noMismatch := func() {
		t.Helper()
		if _, m := met.snapshot(); len(m) != 0 {
			t.Fatalf("mismatches counted: %v", m)
		}
	}

	// Two passes over the 40 documents, nothing counted.
	took := eventually(t, 10*time.Second, "two passes", func() string {
		if n, _ := met.snapshot(); n < 80 {
			return fmt.Sprintf("%d checked", n)
		}
		return ""
	})
	noMismatch()
	if took < 150*time.Millisecond {
		t.Fatalf("80 documents checked in %s: the rate of 400/s is not kept", took)
	}

	// A change the sink applies only after longer than the recheck: the
	// verifier waits for the sink up to the recheck, sets the document
	// aside, and counts nothing.
	lag := ids[3]
	if _, err := w.coll().UpdateByID(w.ctx, lag, bson.D{{Key: "$set", Value: bson.D{{Key: "balance", Value: dec(t, "777.7")}}}}); err != nil {
		t.Fatal(err)
	}
	before, _ := met.snapshot()
	eventually(t, 10*time.Second, "a pass while the change is in flight", func() string {
		if n, _ := met.snapshot(); n < before+80 {
			return fmt.Sprintf("%d checked", n-before)
		}
		return ""
	})
	noMismatch()
	var raw bson.Raw
	raw, err = w.coll().FindOne(w.ctx, bson.D{{Key: "_id", Value: lag}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	w.apply(raw, (*transform.Mapping).Row)
	w.caughtUp()

	// Behind the replicator's back: the 18th decimal place of one amount.
	tampered := ids[17]
	w.exec(`UPDATE accounts SET balance = balance + 0.000000000000000001 WHERE id = (SELECT new_id FROM id_map WHERE legacy_object_id = $1)`, tampered.Hex())
	at := time.Now()
	// Within a pass (40 / 400 per second) plus the recheck, with room for a
	// busy machine.
	took = eventually(t, recheck+5*time.Second, "the tampered amount counted", func() string {
		if _, m := met.snapshot(); m["accounts/document_diff"] == 0 {
			return fmt.Sprintf("mismatches %v", m)
		}
		return ""
	})
	t.Logf("the 1E-18 change was counted %s after it was made (recheck %s)", time.Since(at).Round(time.Millisecond), recheck)
	if took < recheck {
		t.Fatalf("counted after %s, before its recheck of %s", took, recheck)
	}
	last, n, ok, err := state.VerifyMismatches(w.ctx, w.pool)
	if err != nil || !ok || n != 1 {
		t.Fatalf("recorded mismatches: %d %v %v", n, ok, err)
	}
	if last.DocKey != tampered.Hex() || last.Check != checkDiff || last.Column != "balance" ||
		last.Mongo != "18.000000000000000001" || last.Postgres != "18.000000000000000002" {
		t.Fatalf("recorded %+v", last)
	}
	if _, m := met.snapshot(); len(m) != 1 {
		t.Fatalf("mismatches of other documents or checks counted: %v", m)
	}

	// Repaired: nothing more is counted on the next passes.
	w.exec(`UPDATE accounts SET balance = balance - 0.000000000000000001 WHERE id = (SELECT new_id FROM id_map WHERE legacy_object_id = $1)`, tampered.Hex())
	_, m0 := met.snapshot()
	before, _ = met.snapshot()
	eventually(t, 10*time.Second, "two passes after the repair", func() string {
		if n, _ := met.snapshot(); n < before+80 {
			return fmt.Sprintf("%d checked", n-before)
		}
		return ""
	})
	// One more confirmation may have been under way when it was repaired.
	if _, m := met.snapshot(); m["accounts/document_diff"] > m0["accounts/document_diff"]+1 {
		t.Fatalf("still counted after the repair: %v (was %v)", m, m0)
	}
}
