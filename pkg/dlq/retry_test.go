package dlq

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/state"
)

func TestSettle(t *testing.T) {
	t.Parallel()
	ix := func(i int) *int { return &i }
	entries := []Entry{
		{ID: 1, EventID: "a", Status: state.StatusOpen},
		{ID: 2, EventID: "b", TxnID: "s:1", TxnIndex: ix(0), Status: state.StatusOpen},
		{ID: 3, EventID: "c", TxnID: "s:1", TxnIndex: ix(2), TxnLast: true, Status: state.StatusOpen},
		{ID: 4, EventID: "d", Status: state.StatusOpen}, // recorded before transactions were kept
	}
	places := map[int64]txnPlace{2: {"s:1", 0, false}, 3: {"s:1", 2, true}, 4: {"s:2", 0, false}}
	cases := []struct {
		name     string
		outcomes map[string]string
		marks    []state.RetryOutcome // reasons checked by substring
		status   []state.Status
		err      string
	}{
		{
			name:     "applied and skipped close, dead-lettered and parked stay open without a mark",
			outcomes: map[string]string{"a": sink.OutcomeApplied, "b": sink.OutcomeDeadLettered, "c": sink.OutcomeParked, "d": sink.OutcomeSkipped},
			marks:    []state.RetryOutcome{{ID: 1, Outcome: state.OutcomeApplied}, {ID: 4, Outcome: state.OutcomeSkipped}},
			status:   []state.Status{state.StatusRetried, state.StatusOpen, state.StatusOpen, state.StatusRetried},
		},
		{
			name:     "incomplete stays open with the missing indexes",
			outcomes: map[string]string{"a": sink.OutcomeApplied, "b": sink.OutcomeIncomplete, "c": sink.OutcomeIncomplete, "d": sink.OutcomeIncomplete},
			marks: []state.RetryOutcome{
				{ID: 1, Outcome: state.OutcomeApplied},
				{ID: 2, Outcome: state.OutcomeIncomplete, Class: state.ClassIncomplete, Reason: "s:1: indexes [1] of 0..2"},
				{ID: 3, Outcome: state.OutcomeIncomplete, Class: state.ClassIncomplete, Reason: "s:1: indexes [1] of 0..2"},
				{ID: 4, Outcome: state.OutcomeIncomplete, Class: state.ClassIncomplete, Reason: "s:2: no retried event was its last"},
			},
			status: []state.Status{state.StatusRetried, state.StatusOpen, state.StatusOpen, state.StatusOpen},
		},
		{
			name:     "an entry without an outcome fails the retry",
			outcomes: map[string]string{"a": sink.OutcomeApplied, "b": sink.OutcomeApplied, "c": sink.OutcomeApplied},
			err:      "no outcome for dead letter 4",
		},
		{
			name:     "an unknown outcome fails the retry",
			outcomes: map[string]string{"a": sink.OutcomeApplied, "b": sink.OutcomeApplied, "c": sink.OutcomeApplied, "d": "waiting"},
			err:      `outcome "waiting"`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			marks, settled, err := settle(entries, places, tc.outcomes)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(marks) != len(tc.marks) {
				t.Fatalf("marks %+v, want %+v", marks, tc.marks)
			}
			for i, m := range marks {
				w := tc.marks[i]
				if m.ID != w.ID || m.Outcome != w.Outcome || m.Class != w.Class || !strings.Contains(m.Reason, w.Reason) {
					t.Errorf("mark %d: %+v, want %+v", i, m, w)
				}
			}
			var status []state.Status
			for i, s := range settled {
				status = append(status, s.status)
				if s.outcome != tc.outcomes[entries[i].EventID] {
					t.Errorf("entry %d outcome %q", entries[i].ID, s.outcome)
				}
			}
			if !reflect.DeepEqual(status, tc.status) {
				t.Fatalf("status %v, want %v", status, tc.status)
			}
		})
	}
}

func TestRetryMessages(t *testing.T) {
	t.Parallel()
	ev := &event.Event{V: event.Version, ID: "ev1", Op: event.OpInsert, Source: event.Source{DB: "d", Coll: "widgets", ClusterTime: event.ClusterTime{T: 5, I: 1}, Txn: &event.Txn{LSID: "ab", Number: 7, Index: 1, Last: true}},
		Key: mustRaw(t, bson.D{{Key: "_id", Value: "k"}}), Doc: mustRaw(t, bson.D{{Key: "_id", Value: "k"}})}
	env, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	js, err := event.ExtJSON(env)
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte{0x01, 0x02, 0x03}
	entries := []Entry{
		{ID: 1, EventID: "ev1", StreamSeq: 5, Event: js},
		{ID: 2, EventID: "seq:6", StreamSeq: 6, Event: []byte(`{"undecodable_hex": "` + hex.EncodeToString(garbage) + `", "error": "x"}`)},
	}
	msgs, places, err := retryMessages(entries)
	if err != nil {
		t.Fatal(err)
	}
	if msgs[0].Seq != 5 || !reflect.DeepEqual([]byte(msgs[0].Data), env) {
		t.Fatalf("envelope not restored: %v", msgs[0])
	}
	if msgs[1].Seq != 6 || !reflect.DeepEqual([]byte(msgs[1].Data), garbage) {
		t.Fatalf("undecodable bytes not restored: %v", msgs[1])
	}
	if p := places[1]; p != (txnPlace{"ab:7", 1, true}) {
		t.Fatalf("place from the envelope: %+v", p)
	}
	if _, ok := places[2]; ok {
		t.Fatal("an undecodable event placed in a transaction")
	}
	if _, _, err := retryMessages([]Entry{{ID: 9, Event: []byte(`[1, 2]`)}}); err == nil || !strings.Contains(err.Error(), "dead letter 9") {
		t.Fatalf("a broken stored event: %v", err)
	}
}

func mustRaw(t *testing.T, d bson.D) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An envelope stored as {"bson_hex"} (it held NUL characters jsonb
// cannot store) is re-applied byte for byte.
func TestEnvelopeFromBSONHex(t *testing.T) {
	raw, err := bson.Marshal(bson.D{{Key: "a", Value: "x\x00y"}})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := json.Marshal(map[string]string{"bson_hex": hex.EncodeToString(raw), "note": "…"})
	got, err := envelope(stored)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("envelope = %x, %v; want %x", got, err, raw)
	}
}
