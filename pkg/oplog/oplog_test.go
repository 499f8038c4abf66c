package oplog_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/mongotest"
	"github.com/amanat/cdc/pkg/oplog"
)

func ct(t, i uint32) event.ClusterTime { return event.ClusterTime{T: t, I: i} }

func TestHeadroom(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		cp, oldest, newest     event.ClusterTime
		window, lag, headroom  time.Duration
		lost, lowAt1h, lowAt0s bool
	}{
		{"caught up", ct(1000+7200, 1), ct(1000, 1), ct(1000+7200, 5), 2 * time.Hour, 0, 2 * time.Hour, false, false, false},
		{"lagging", ct(1000+1800, 0), ct(1000, 1), ct(1000+7200, 5), 2 * time.Hour, 5400 * time.Second, 30 * time.Minute, false, true, false},
		{"at the oldest entry", ct(1000, 1), ct(1000, 1), ct(2000, 1), 1000 * time.Second, 1000 * time.Second, 0, false, true, false},
		{"same second, older increment", ct(1000, 0), ct(1000, 1), ct(2000, 1), 1000 * time.Second, 1000 * time.Second, -time.Nanosecond, true, true, true},
		{"fell off", ct(900, 0), ct(1000, 1), ct(2000, 1), 1000 * time.Second, 1100 * time.Second, -100 * time.Second, true, true, true},
		{"ahead of newest", ct(2001, 0), ct(1000, 1), ct(2000, 1), 1000 * time.Second, 0, 1001 * time.Second, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := oplog.Headroom(tc.cp, tc.oldest, tc.newest)
			if e.Window != tc.window || e.Lag != tc.lag || e.Headroom != tc.headroom || e.Lost != tc.lost {
				t.Fatalf("got window=%s lag=%s headroom=%s lost=%v, want %s %s %s %v",
					e.Window, e.Lag, e.Headroom, e.Lost, tc.window, tc.lag, tc.headroom, tc.lost)
			}
			if e.Low(time.Hour) != tc.lowAt1h || e.Low(0) != tc.lowAt0s {
				t.Fatalf("Low(1h)=%v Low(0)=%v, want %v %v", e.Low(time.Hour), e.Low(0), tc.lowAt1h, tc.lowAt0s)
			}
		})
	}
}

func TestTokenTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		tok  bson.D
		want event.ClusterTime
		ok   bool
	}{
		// A MongoDB 7 event token (KeyString v2): 82 + seconds + increment.
		{"mongodb event token", bson.D{{Key: "_data", Value: "8265A1B2C3000000012B042C0100296E5A1004B1C2"}}, ct(0x65A1B2C3, 1), true},
		{"lower case", bson.D{{Key: "_data", Value: "8265a1b2c30000000a"}}, ct(0x65A1B2C3, 10), true},
		{"not a timestamp", bson.D{{Key: "_data", Value: "0165A1B2C3000000012B"}}, ct(0, 0), false},
		{"short", bson.D{{Key: "_data", Value: "8265"}}, ct(0, 0), false},
		{"not hex", bson.D{{Key: "_data", Value: "82zzA1B2C3000000012B"}}, ct(0, 0), false},
		{"no _data", bson.D{{Key: "x", Value: 1}}, ct(0, 0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := bson.Marshal(tc.tok)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := oplog.TokenTime(raw)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("TokenTime = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func connect(t *testing.T) (*mongotest.Server, *mongo.Client) {
	t.Helper()
	srv := mongotest.Start(t)
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	return srv, client
}

// TestWindowMatchesServer: Window reads local.oplog.rs as MongoDB's tools
// do, before and after the oplog rolls over, and a change stream token's
// time agrees with the oplog entry it stands for.
func TestWindowMatchesServer(t *testing.T) {
	ctx := context.Background()
	srv, client := connect(t)
	coll := client.Database("w").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	for i := 0; i < 5; i++ {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "i", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	oldest, newest, err := oplog.Window(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	if want := srv.OldestOplogTime(); oldest != ct(want.T, want.I) {
		t.Fatalf("oldest = %s, server says %v", oldest, want)
	}
	if want := srv.LatestOplogTime(); newest != ct(want.T, want.I) {
		t.Fatalf("newest = %s, server says %v", newest, want)
	}
	if !cs.Next(ctx) {
		t.Fatal(cs.Err())
	}
	tt, ok := oplog.TokenTime(cs.ResumeToken())
	wt, wi := cs.Current.Lookup("clusterTime").Timestamp()
	if !ok || tt != ct(wt, wi) {
		t.Fatalf("token time %v (%v), event cluster time %d.%d", tt, ok, wt, wi)
	}

	latest := srv.LatestOplogTime()
	srv.TruncateOplog(bson.Timestamp{T: latest.T, I: latest.I})
	oldest2, err := oplog.Oldest(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	if oldest2 != ct(latest.T, latest.I) || oldest2.Compare(oldest) <= 0 {
		t.Fatalf("after truncation oldest = %s, want %d.%d", oldest2, latest.T, latest.I)
	}
	err = oplog.CheckStart(oldest, oldest2)
	var rl *oplog.RangeLostError
	if !errors.As(err, &rl) || !errors.Is(err, oplog.ErrRangeLost) || !strings.Contains(err.Error(), oldest2.String()) {
		t.Fatalf("CheckStart = %v, want a RangeLostError naming %s", err, oldest2)
	}
	if err := oplog.CheckStart(oldest2, oldest2); err != nil {
		t.Fatalf("start at the oldest entry refused: %v", err)
	}
}

// TestMonitorWarns: a checkpoint near the oldest entry produces a warning,
// one that fell off an error-level message naming the recovery.
func TestMonitorWarns(t *testing.T) {
	ctx := context.Background()
	srv, client := connect(t)
	if _, err := client.Database("w").Collection("c").InsertOne(ctx, bson.D{{Key: "a", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	old := srv.OldestOplogTime()
	cp := ct(old.T, old.I)
	m := &oplog.Monitor{
		Client:     client,
		Checkpoint: func(context.Context) (event.ClusterTime, bool, error) { return cp, true, nil },
		Threshold:  time.Hour,
		Interval:   10 * time.Millisecond,
		Log:        zap.New(core),
	}
	var seen []oplog.Estimate
	m.Observe = func(e oplog.Estimate) { seen = append(seen, e) }
	e, ok, err := m.Check(ctx)
	if err != nil || !ok || e.Lost || !e.Low(time.Hour) {
		t.Fatalf("Check = %+v, %v, %v", e, ok, err)
	}
	rctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if err := m.Run(rctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if len(seen) == 0 || logs.FilterMessageSnippet("headroom").Len() == 0 {
		t.Fatalf("no warning logged: %v", logs.All())
	}
	cp = ct(old.T-10, 0)
	core2, logs2 := observer.New(zap.InfoLevel)
	if !oplog.Warn(zap.New(core2), oplog.Headroom(cp, e.Oldest, e.Newest), time.Hour) {
		t.Fatal("lost checkpoint not reported")
	}
	if logs2.FilterLevelExact(zap.ErrorLevel).FilterMessageSnippet("cdc snapshot").Len() != 1 {
		t.Fatalf("lost checkpoint message: %v", logs2.All())
	}
	m.Checkpoint = func(context.Context) (event.ClusterTime, bool, error) { return event.ClusterTime{}, false, nil }
	if _, ok, err := m.Check(ctx); ok || err != nil {
		t.Fatalf("no checkpoint: ok=%v err=%v", ok, err)
	}
}
