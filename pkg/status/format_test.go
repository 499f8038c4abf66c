package status_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/status"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func ptr[T any](v T) *T { return &v }

// sampleReport has every section filled, one of them unknown.
func sampleReport() *status.Report {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ct := func(t, i uint32) *status.ClusterTime {
		return &status.ClusterTime{T: t, I: i, Time: time.Unix(int64(t), 0).UTC()}
	}
	saved := at.Add(-2 * time.Second)
	applied := at.Add(-time.Second)
	first, last := at.Add(-time.Hour), at.Add(-3*time.Second)
	created := time.Date(2026, 2, 1, 9, 30, 0, 123456000, time.UTC)
	fenced := at.Add(-10 * time.Minute)
	deferredSince := at.Add(-45 * time.Minute)
	return &status.Report{
		V: status.ReportVersion, Time: at, Healthy: false,
		Problems: []string{"mongo: unreachable: server selection timeout", "dead letters: 2 open (cdc dlq list)"},
		Warnings: []string{"deferred events: the oldest of 5 (3 waiting for a parent, 2 parts of incomplete transactions) was set aside 45m0s ago, over 30m0s"},
		NATS:     status.NATSStatus{System: status.System{Reachable: true, Address: "nats://127.0.0.1:4222"}, Mode: status.ModeDaemon, StoreDir: "data/nats"},
		Postgres: status.System{Reachable: true, Address: "postgres://cdc:xxxxx@pg:5432/escrow"},
		Mongo:    status.System{Address: "mongodb://mongo:27017/?replicaSet=rs0", Error: "unreachable: server selection timeout"},
		Tailer: status.TailerStatus{Bucket: "cdc_checkpoints", Key: "tailer.escrow", Found: true,
			ResumeToken: json.RawMessage(`{"_data":"8267C2F3FC000000042B0229296E04"}`),
			ClusterTime: ct(1772366396, 4), LastEventClusterTime: ct(1772366390, 2),
			SavedAt: &saved, AgeSeconds: 2, Events: 123456,
			Lease: &status.TailerLease{Holder: "cdc-1:4242:9f3a", State: status.LeaseHeld, HeldSince: &fenced, HeldForSeconds: 600, Takeovers: 3,
				LastTakeover: &status.TailerTakeover{At: fenced, AgoSeconds: 600, From: "cdc-2:777:0b1c", To: "cdc-1:4242:9f3a",
					Reason: "expired", QuietSeconds: 10.042}}},
		Oplog:     status.OplogStatus{Error: "MongoDB unreachable"},
		Stream:    status.StreamStatus{Name: "CDC", Messages: 123456, Bytes: 98765432, FirstSeq: 1, LastSeq: 123456, FirstTime: &first, LastTime: &last, Consumers: 1, Created: &created},
		DLQStream: status.StreamStatus{Name: "CDC_DLQ", Messages: 2, Bytes: 2048, FirstSeq: 1, LastSeq: 2, FirstTime: &first, LastTime: &last},
		Consumer: status.ConsumerStatus{Name: "cdc-sink", Found: true, Pending: 40, AckPending: 16, Redelivered: 0, Waiting: 1,
			DeliveredSeq: 123416, AckFloorSeq: 123400},
		Sink: status.SinkStatus{Consumer: "cdc-sink", Found: true, StreamSeq: 123400, ClusterTime: ct(1772366380, 9), AppliedAt: &applied,
			Stream: "CDC", StreamCreated: &created,
			Fence: &status.FenceStatus{Owner: "cdc-1:4242:9f3a", Epoch: 7, Since: &fenced, Held: ptr(true)}},
		Deferred: status.DeferredStatus{Waiting: 3, TxnParts: 2, Bytes: 5120, Oldest: &deferredSince, OldestAgeSeconds: 2700},
		Lag:      status.LagStatus{Events: 56, Seconds: 20},
		DeadLetters: status.DeadLetterStatus{Open: 2, Count: []status.DeadLetterCount{
			{Collection: "payments", Class: "rejected", Count: 1}, {Collection: "payments", Class: "parked", Count: 1}}},
		Collections: status.CollectionsStatus{MongoError: "MongoDB unreachable", Items: []status.CollectionCount{
			{Collection: "payments", Table: "payments", Rows: ptr[int64](5000), DocVersions: ptr[int64](5001), Tombstones: ptr[int64](3)},
			{Collection: "users", Table: "users", Rows: ptr[int64](900), LiveRows: ptr[int64](880), DocVersions: ptr[int64](900), Tombstones: ptr[int64](0)},
		}},
	}
}

// sampleLanedReport is sampleReport with sink.lanes configured: the
// stream, consumer and sink sections say "per lane", and the lanes section
// shows two lanes (one applied and held, one with no position yet), two
// live members and the assignment.
func sampleLanedReport() *status.Report {
	r := sampleReport()
	at := r.Time
	fenced := at.Add(-10 * time.Minute)
	created := time.Date(2026, 2, 1, 9, 30, 0, 123456000, time.UTC)
	perLane := "per lane with sink.lanes configured (see the lanes section)"
	r.Stream = status.StreamStatus{Name: "CDC", Error: perLane}
	r.Consumer = status.ConsumerStatus{Name: "cdc-sink", Error: perLane}
	r.Sink = status.SinkStatus{Consumer: "cdc-sink", Error: perLane}
	r.Lag = status.LagStatus{Events: 30, Seconds: 20}
	r.Lanes = &status.LanesStatus{MembersBucket: "CDC_sink_members",
		Members: []status.LaneMember{{Owner: "cdc-1:4242:9f3a", Lanes: []string{"ledger"}}, {Owner: "cdc-2:777:0b1c", Lanes: []string{"payments"}}},
		Items: []status.LaneStatus{
			{Name: "ledger", Collections: []string{"accounts", "ledger_entries"}, Stream: "CDC_ledger", FirstSeq: 1, LastSeq: 5030, StreamCreated: &created, Messages: 5030,
				AssignedTo: "cdc-1:4242:9f3a",
				Position: status.SinkStatus{Consumer: "cdc-sink_ledger", Found: true, StreamSeq: 5000,
					ClusterTime: &status.ClusterTime{T: 1772366380, I: 9, Time: time.Unix(1772366380, 0).UTC()}, AppliedAt: &fenced,
					Stream: "CDC_ledger", StreamCreated: &created,
					Fence: &status.FenceStatus{Owner: "cdc-1:4242:9f3a", Epoch: 4, Since: &fenced, Held: ptr(true)}},
				Lag: status.LagStatus{Events: 30, Seconds: 20}},
			{Name: "payments", Collections: []string{"payments"}, Stream: "CDC_payments", AssignedTo: "cdc-2:777:0b1c",
				Position: status.SinkStatus{Consumer: "cdc-sink_payments"}},
		}}
	return r
}

// sampleQuietReport is a new deployment with nothing to report: every
// system reached, no checkpoint, no position, empty streams, counts
// skipped.
func sampleQuietReport() *status.Report {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ct := func(t, i uint32) *status.ClusterTime {
		return &status.ClusterTime{T: t, I: i, Time: time.Unix(int64(t), 0).UTC()}
	}
	return &status.Report{
		V: status.ReportVersion, Time: at, Healthy: true,
		NATS:        status.NATSStatus{System: status.System{Reachable: true, Address: "nats://nats:4222"}, Mode: status.ModeExternal},
		Postgres:    status.System{Reachable: true, Address: "postgres://pg:5432/escrow"},
		Mongo:       status.System{Reachable: true, Address: "mongodb://mongo:27017/?replicaSet=rs0"},
		Tailer:      status.TailerStatus{Bucket: "cdc_checkpoints", Key: "tailer.escrow"},
		Oplog:       status.OplogStatus{Oldest: ct(1772280000, 1), Newest: ct(1772366400, 1), WindowSeconds: 86400},
		Stream:      status.StreamStatus{Name: "CDC"},
		DLQStream:   status.StreamStatus{Name: "CDC_DLQ", Bytes: 512},
		Consumer:    status.ConsumerStatus{Name: "cdc-sink"},
		Sink:        status.SinkStatus{Consumer: "cdc-sink"},
		Collections: status.CollectionsStatus{Skipped: true},
	}
}

// sampleOddReport takes the rarer branches: the stored state read with a
// temporary server, a checkpoint without a save time or cluster time and
// a released lease of no known holder, a lost checkpoint, an unreadable
// stream and consumer, a position without its commit or stream creation
// time and a free fence, deferred events without an oldest time, unknown
// lag and dead letters, a recorded verification mismatch, failed counts.
func sampleOddReport() *status.Report {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ct := func(t, i uint32) *status.ClusterTime {
		return &status.ClusterTime{T: t, I: i, Time: time.Unix(int64(t), 0).UTC()}
	}
	last := at.Add(-time.Minute)
	return &status.Report{
		V: status.ReportVersion, Time: at, Healthy: false,
		Problems: []string{"oplog: the checkpoint is older than the oldest entry"},
		NATS: status.NATSStatus{System: status.System{Reachable: true, Address: "nats://127.0.0.1:34567"},
			Mode: status.ModeStoredState, StoreDir: "data/nats"},
		Postgres: status.System{Address: "postgres://pg:5432/escrow", Error: "bad postgres.url: cannot parse"},
		Mongo:    status.System{Reachable: true, Address: "mongodb://mongo:27017/"},
		Tailer: status.TailerStatus{Bucket: "cdc_checkpoints", Key: "tailer.escrow", Found: true, Events: 7,
			ResumeToken: json.RawMessage(`{"_data":"82"}`), LastEventClusterTime: ct(1772366000, 1),
			Lease: &status.TailerLease{State: status.LeaseReleased}},
		Oplog: status.OplogStatus{Oldest: ct(1772366000, 1), Newest: ct(1772366400, 1), WindowSeconds: 400,
			HeadroomSeconds: ptr(-30.0), BehindSeconds: ptr(430.0), Lost: true},
		Stream:    status.StreamStatus{Name: "CDC", Error: "stream not found"},
		DLQStream: status.StreamStatus{Name: "CDC_DLQ", Messages: 3, Bytes: 3 << 30, FirstSeq: 4, LastSeq: 6, LastTime: &last},
		Consumer:  status.ConsumerStatus{Name: "cdc-sink", Error: "NATS unreachable"},
		Sink: status.SinkStatus{Consumer: "cdc-sink", Found: true, StreamSeq: 9, Stream: "CDC",
			Fence: &status.FenceStatus{Epoch: 2, Held: ptr(false)}},
		Deferred:    status.DeferredStatus{Waiting: 1, Bytes: -1},
		Lag:         status.LagStatus{Error: "stream not found"},
		DeadLetters: status.DeadLetterStatus{Error: "PostgreSQL unreachable"},
		Verify: &status.VerifyStatus{Recorded: 2, Last: &status.VerifyMismatch{Collection: "payments", DocKey: "65f1a2b3c4d5e6f708192a3b",
			Check: "document_diff", Table: "payments", Column: "amount", Mongo: "10.50", Postgres: "10.5", Detail: "amount differs",
			At: at.Add(-5 * time.Minute), AgoSeconds: 300, FirstSeen: at.Add(-time.Hour), Times: 12}},
		Collections: status.CollectionsStatus{Error: "PostgreSQL unreachable"},
	}
}

// sampleErrorsReport is a healthy verdict with warnings and the other
// rare branches: NATS unreachable (no mode), an unreadable checkpoint, a
// low headroom, an unreadable position and deferred events, partly
// failed counts, an unreadable verification record.
func sampleErrorsReport() *status.Report {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ct := func(t, i uint32) *status.ClusterTime {
		return &status.ClusterTime{T: t, I: i, Time: time.Unix(int64(t), 0).UTC()}
	}
	return &status.Report{
		V: status.ReportVersion, Time: at, Healthy: true,
		Warnings:    []string{"oplog: headroom 1h0m0s is below oplog.headroom_warning 6h0m0s", "second warning"},
		NATS:        status.NATSStatus{System: status.System{Address: "nats://nats:4222", Error: "unreachable: connection refused"}},
		Postgres:    status.System{Reachable: true, Address: "postgres://pg:5432/escrow"},
		Mongo:       status.System{Reachable: true, Address: "mongodb://mongo:27017/"},
		Tailer:      status.TailerStatus{Bucket: "cdc_checkpoints", Key: "tailer.escrow", Error: "NATS unreachable"},
		Oplog:       status.OplogStatus{Oldest: ct(1772362800, 1), Newest: ct(1772366400, 1), WindowSeconds: 3600, HeadroomSeconds: ptr(3600.0), BehindSeconds: ptr(0.4), Low: true},
		Stream:      status.StreamStatus{Name: "CDC", Error: "NATS unreachable"},
		DLQStream:   status.StreamStatus{Name: "CDC_DLQ", Error: "NATS unreachable"},
		Consumer:    status.ConsumerStatus{Name: "cdc-sink", Error: "NATS unreachable"},
		Sink:        status.SinkStatus{Consumer: "cdc-sink", Error: "relation cdc.sink_positions does not exist"},
		Deferred:    status.DeferredStatus{Error: "relation cdc.deferred does not exist"},
		Lag:         status.LagStatus{Error: "NATS unreachable"},
		DeadLetters: status.DeadLetterStatus{Open: 0},
		Verify:      &status.VerifyStatus{Error: "relation cdc.verify_mismatches does not exist"},
		Collections: status.CollectionsStatus{PostgresError: "timeout", Items: []status.CollectionCount{
			{Collection: "payments", Table: "payments", Mongo: ptr[int64](12), Error: "table payments does not exist"},
			{Collection: "users", Table: "users", Mongo: ptr[int64](3)},
		}},
	}
}

// TestFormatsGolden pins the JSON form (scripts depend on its field
// names; a change needs a ReportVersion bump) and the text form, byte for
// byte: the samples between them take every branch of WriteText.
func TestFormatsGolden(t *testing.T) {
	text := func(b *bytes.Buffer, r *status.Report) error { return status.WriteText(b, r) }
	jsonForm := func(b *bytes.Buffer, r *status.Report) error { return status.WriteJSON(b, r) }
	for _, tc := range []struct {
		file   string
		sample func() *status.Report
		write  func(*bytes.Buffer, *status.Report) error
	}{
		// Without lanes the report is as before lanes existed (no lanes
		// field, no lanes section).
		{"report.json.golden", sampleReport, jsonForm},
		{"report.txt.golden", sampleReport, text},
		{"report_lanes.json.golden", sampleLanedReport, jsonForm},
		{"report_lanes.txt.golden", sampleLanedReport, text},
		{"report_quiet.txt.golden", sampleQuietReport, text},
		{"report_odd.txt.golden", sampleOddReport, text},
		{"report_errors.txt.golden", sampleErrorsReport, text},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tc.write(&buf, tc.sample()); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/status -update)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("%s changed (go test ./pkg/status -update after review):\n%s", tc.file, buf.String())
			}
		})
	}
}

// TestJSONRoundTrip: the JSON form decodes back into the same report.
func TestJSONRoundTrip(t *testing.T) {
	for _, sample := range []func() *status.Report{sampleReport, sampleLanedReport} {
		roundTrip(t, sample())
	}
}

func roundTrip(t *testing.T, r *status.Report) {
	t.Helper()
	var buf bytes.Buffer
	if err := status.WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	var back status.Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := status.WriteJSON(&again, &back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Errorf("round trip changed the report:\n%s\n%s", buf.String(), again.String())
	}
}
