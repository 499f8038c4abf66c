package benchkit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/amanat/cdc/pkg/event"
)

// RawBatch is the raw writers' transaction size in events, the sink's
// default batch (sink.batch_size).
const RawBatch = 1000

// RawStream is the stream the raw publish ceiling fills and the raw
// pipeline drains (subjects raw.>).
const RawStream = "RAW"

// Measure is one timed run.
type Measure struct {
	Events  int
	Elapsed time.Duration
}

// Rate is events per second (0 for an empty run).
func (m Measure) Rate() float64 {
	if m.Elapsed <= 0 {
		return 0
	}
	return float64(m.Events) / m.Elapsed.Seconds()
}

// Capture reads the first limit messages (all if limit <= 0) of each
// stream, the tailer's payloads as published; from several streams (sink
// lanes) they are merged into MongoDB's order and cut to limit.
func Capture(ctx context.Context, js jetstream.JetStream, streams []string, limit int) ([]Captured, error) {
	var all []Captured
	for _, name := range streams {
		st, err := js.Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("capture: stream %s: %w", name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("capture: stream %s: %w", name, err)
		}
		want := int(info.State.Msgs)
		if limit > 0 {
			want = min(want, limit)
		}
		c, err := js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return nil, fmt.Errorf("capture: consumer on %s: %w", name, err)
		}
		for got := 0; got < want; {
			batch, err := c.Fetch(min(RawBatch, want-got), jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return nil, fmt.Errorf("capture: fetch from %s: %w", name, err)
			}
			n := 0
			for msg := range batch.Messages() {
				all = append(all, Captured{Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data()})
				n++
			}
			if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
				return nil, fmt.Errorf("capture: fetch from %s: %w", name, err)
			}
			if n == 0 {
				return nil, fmt.Errorf("capture: %s delivered %d of %d messages: %w", name, got, want, ErrIncomplete)
			}
			got += n
		}
	}
	if len(streams) > 1 {
		return MergeByPosition(all, limit)
	}
	return all, nil
}

// RawPublish is the publish ceiling: every captured payload, with its
// headers (Nats-Msg-Id included), published asynchronously to a new file
// stream RawStream on js's server, maxPending at most in flight (the
// tailer's tailer.max_in_flight), timed until the last acknowledgement.
// The stream it leaves is RawPipeline's input.
func RawPublish(ctx context.Context, js jetstream.JetStream, d *RawData, dedup time.Duration) (Measure, error) {
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: RawStream, Subjects: []string{"raw.>"},
		Storage: jetstream.FileStorage, Duplicates: dedup}); err != nil {
		return Measure{}, fmt.Errorf("raw publish: create stream: %w", err)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(d.Events))
	start := time.Now()
	for i := range d.Events {
		e := &d.Events[i]
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: e.Subject, Header: e.Msg.Header, Data: e.Msg.Data})
		if err != nil {
			return Measure{}, fmt.Errorf("raw publish: message %d: %w", i, err)
		}
		futures = append(futures, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return Measure{}, fmt.Errorf("raw publish: %w: %w", ErrIncomplete, ctx.Err())
	}
	m := Measure{Events: len(d.Events), Elapsed: time.Since(start)}
	for i, f := range futures {
		select {
		case err := <-f.Err():
			return m, fmt.Errorf("raw publish: message %d: %w", i, err)
		default:
		}
	}
	return m, nil
}

// RawPipeline is the JetStream -> Postgres ceiling: RawStream drained
// into pgURL by one applier per partition, each on its own connection and
// its own durable consumer (cumulative acks after each commit), decoding
// every envelope and writing the precomputed rows (RawApplier). The
// prologue (the sellers every partition references) is applied first by
// one applier. Timed from the first fetch to the last commit.
func RawPipeline(ctx context.Context, js jetstream.JetStream, pgURL string, d *RawData) (Measure, error) {
	st, err := js.Stream(ctx, RawStream)
	if err != nil {
		return Measure{}, fmt.Errorf("raw pipeline: %w", err)
	}
	consumer := func(name, filter string) (jetstream.Consumer, error) {
		c, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: name, FilterSubject: filter,
			AckPolicy: jetstream.AckAllPolicy, AckWait: 5 * time.Minute, MaxAckPending: 10 * RawBatch})
		if err != nil {
			return nil, fmt.Errorf("raw pipeline: consumer %s: %w", name, err)
		}
		return c, nil
	}
	pre, err := consumer("raw-pre", "raw.pre.>")
	if err != nil {
		return Measure{}, err
	}
	parts := make([]jetstream.Consumer, d.Partitions)
	conns := make([]*pgx.Conn, d.Partitions)
	for k := range parts {
		if parts[k], err = consumer(fmt.Sprintf("raw-p%d", k), fmt.Sprintf("raw.p%d.>", k)); err != nil {
			return Measure{}, err
		}
		if conns[k], err = pgx.Connect(ctx, pgURL); err != nil {
			return Measure{}, fmt.Errorf("raw pipeline: connect: %w", err)
		}
		defer conns[k].Close(context.WithoutCancel(ctx))
	}
	appliers := make([]*RawApplier, d.Partitions)
	for k := range appliers {
		appliers[k] = NewRawApplier(conns[k], d.Tables)
		if err := appliers[k].prepare(ctx); err != nil {
			return Measure{}, err
		}
	}
	start := time.Now()
	if err := drain(ctx, pre, appliers[0], d, d.Prologue); err != nil {
		return Measure{}, err
	}
	g, gctx := errgroup.WithContext(ctx)
	for k := range parts {
		g.Go(func() error { return drain(gctx, parts[k], appliers[k], d, d.PartitionCounts[k]) })
	}
	if err := g.Wait(); err != nil {
		return Measure{}, err
	}
	return Measure{Events: len(d.Events), Elapsed: time.Since(start)}, nil
}

// drain applies count messages of c, RawBatch per transaction.
func drain(ctx context.Context, c jetstream.Consumer, a *RawApplier, d *RawData, count int) error {
	writes := make([]*RowWrite, 0, RawBatch)
	for done := 0; done < count; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("raw pipeline: %w after %d of %d: %w", ErrIncomplete, done, count, err)
		}
		batch, err := c.Fetch(min(RawBatch, count-done), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("raw pipeline: fetch: %w", err)
		}
		writes = writes[:0]
		var last jetstream.Msg
		for msg := range batch.Messages() {
			ev, err := event.Unmarshal(msg.Data())
			if err != nil {
				return fmt.Errorf("raw pipeline: %w", err)
			}
			md, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("raw pipeline: metadata: %w", err)
			}
			seq := int(md.Sequence.Stream)
			if seq < 1 || seq > len(d.Events) || d.Events[seq-1].ID != ev.ID {
				return fmt.Errorf("raw pipeline: sequence %d carries event %s, not the one published there: %w", seq, ev.ID, ErrCapture)
			}
			writes = append(writes, &d.Events[seq-1].Write)
			last = msg
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("raw pipeline: fetch: %w", err)
		}
		if last == nil {
			continue
		}
		if err := a.Apply(ctx, writes); err != nil {
			return err
		}
		if err := last.Ack(); err != nil {
			return fmt.Errorf("raw pipeline: ack: %w", err)
		}
		done += len(writes)
	}
	return nil
}

// RawCopy is the apply ceiling: the same precomputed rows written in
// stream order by one RawApplier on one connection, RawBatch events per
// transaction, without JetStream.
func RawCopy(ctx context.Context, pgURL string, d *RawData) (Measure, error) {
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return Measure{}, fmt.Errorf("raw copy: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	a := NewRawApplier(conn, d.Tables)
	if err := a.prepare(ctx); err != nil {
		return Measure{}, err
	}
	writes := make([]*RowWrite, 0, RawBatch)
	start := time.Now()
	for off := 0; off < len(d.Events); off += RawBatch {
		writes = writes[:0]
		for i := off; i < min(off+RawBatch, len(d.Events)); i++ {
			writes = append(writes, &d.Events[i].Write)
		}
		if err := a.Apply(ctx, writes); err != nil {
			return Measure{}, err
		}
	}
	return Measure{Events: len(d.Events), Elapsed: time.Since(start)}, nil
}
