package benchkit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Writer writes a workload's ops to MongoDB, batching writes outside
// transactions into one ordered bulk write per collection (the driver
// sends a backlog of a million events in minutes instead of a round trip
// each) while keeping every document's own history in order and every
// referenced document before its references:
//
//   - a batch is flushed in Collections order (users, purchaseRequests,
//     payments), each collection's inserts, then updates, then deletes;
//     a collection references only itself (sellers, written first) and
//     the collections before it, and a document's writes keep their order;
//   - a transaction touching or referencing a document still waiting in a
//     batch flushes the batch first; one that does not is written at once;
//   - Flush writes what waits (the end of a backlog, a tick of the paced
//     phase).
//
// A Writer is not safe for concurrent use.
type Writer struct {
	db       *mongo.Database
	sess     *mongo.Session
	maxBatch int
	pending  map[string]*collBatch
	touched  map[bson.ObjectID]bool
	n        int
	// Stats of what was written.
	Stats WriterStats
}

// WriterStats counts a Writer's calls to MongoDB.
type WriterStats struct {
	Ops          int `json:"ops"`
	Events       int `json:"events"`
	BulkWrites   int `json:"bulk_writes"`
	Transactions int `json:"transactions"`
}

type collBatch struct {
	inserts, updates, deletes []mongo.WriteModel
}

// NewWriter writes into db; maxBatch bounds the ops waiting in batches
// (default 1000). Close ends its session.
func NewWriter(ctx context.Context, db *mongo.Database, maxBatch int) (*Writer, error) {
	if maxBatch <= 0 {
		maxBatch = 1000
	}
	sess, err := db.Client().StartSession()
	if err != nil {
		return nil, fmt.Errorf("benchkit writer: start session: %w", err)
	}
	return &Writer{db: db, sess: sess, maxBatch: maxBatch, pending: map[string]*collBatch{},
		touched: map[bson.ObjectID]bool{}}, nil
}

// Close ends the writer's session (it does not flush).
func (w *Writer) Close(ctx context.Context) { w.sess.EndSession(ctx) }

// Write queues op, or writes it now if it is a transaction.
func (w *Writer) Write(ctx context.Context, op Op) error {
	w.Stats.Ops++
	w.Stats.Events += op.Events()
	if op.Kind == OpTxn {
		if w.waiting(op) {
			if err := w.Flush(ctx); err != nil {
				return err
			}
		}
		return w.txn(ctx, op)
	}
	b := w.pending[op.Coll]
	if b == nil {
		b = &collBatch{}
		w.pending[op.Coll] = b
	}
	filter := bson.D{{Key: "_id", Value: op.ID}}
	switch op.Kind {
	case OpInsert:
		b.inserts = append(b.inserts, mongo.NewInsertOneModel().SetDocument(op.Doc))
	case OpUpdate:
		b.updates = append(b.updates, mongo.NewUpdateOneModel().SetFilter(filter).SetUpdate(op.Update))
	case OpDelete:
		b.deletes = append(b.deletes, mongo.NewDeleteOneModel().SetFilter(filter))
	default:
		return fmt.Errorf("benchkit writer: op kind %d: %w", op.Kind, errors.ErrUnsupported)
	}
	w.touched[op.ID] = true
	w.n++
	if w.n >= w.maxBatch {
		return w.Flush(ctx)
	}
	return nil
}

// waiting reports whether a transaction touches or references a document
// waiting in a batch.
func (w *Writer) waiting(op Op) bool {
	for _, id := range op.Refs {
		if w.touched[id] {
			return true
		}
	}
	for _, sub := range op.Txn {
		if w.touched[sub.ID] {
			return true
		}
		for _, id := range sub.Refs {
			if w.touched[id] {
				return true
			}
		}
	}
	return false
}

// Flush writes every waiting batch.
func (w *Writer) Flush(ctx context.Context) error {
	if w.n == 0 {
		return nil
	}
	ordered := options.BulkWrite().SetOrdered(true)
	for _, c := range Collections {
		b := w.pending[c]
		if b == nil {
			continue
		}
		models := append(append(b.inserts, b.updates...), b.deletes...)
		if len(models) == 0 {
			continue
		}
		res, err := w.db.Collection(c).BulkWrite(ctx, models, ordered)
		if err != nil {
			return fmt.Errorf("benchkit writer: bulk write of %d ops into %s: %w", len(models), c, err)
		}
		if want := int64(len(b.updates)); res.MatchedCount != want {
			return fmt.Errorf("benchkit writer: %s: %d of %d updates matched a document: %w", c, res.MatchedCount, want, ErrWorkload)
		}
		if want := int64(len(b.deletes)); res.DeletedCount != want {
			return fmt.Errorf("benchkit writer: %s: %d of %d deletes found a document: %w", c, res.DeletedCount, want, ErrWorkload)
		}
		w.Stats.BulkWrites++
		b.inserts, b.updates, b.deletes = b.inserts[:0], b.updates[:0], b.deletes[:0]
	}
	clear(w.touched)
	w.n = 0
	return nil
}

func (w *Writer) txn(ctx context.Context, op Op) error {
	_, err := w.sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		for _, sub := range op.Txn {
			c := w.db.Collection(sub.Coll)
			switch sub.Kind {
			case OpInsert:
				if _, err := c.InsertOne(sc, sub.Doc); err != nil {
					return nil, err
				}
			case OpUpdate:
				res, err := c.UpdateByID(sc, sub.ID, sub.Update)
				if err != nil {
					return nil, err
				}
				if res.MatchedCount != 1 {
					return nil, fmt.Errorf("update of %s %s matched nothing: %w", sub.Coll, sub.ID.Hex(), ErrWorkload)
				}
			default:
				return nil, fmt.Errorf("op kind %d inside a transaction: %w", sub.Kind, errors.ErrUnsupported)
			}
		}
		return nil, nil
	})
	if err != nil {
		return fmt.Errorf("benchkit writer: transaction %s: %w", op.Action, err)
	}
	w.Stats.Transactions++
	return nil
}

// WriteBacklog writes the workload's next ops until at least events
// change events are written (a transaction may pass it by two), then
// flushes, and returns the number written. The ops are generated in a
// goroutine of their own, ahead of the writes.
func WriteBacklog(ctx context.Context, gen *Workload, w *Writer, events int) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ops := make(chan Op, 1024)
	go func() {
		defer close(ops)
		for n := 0; n < events || gen.Pending() > 0; {
			op := gen.Next()
			n += op.Events()
			select {
			case ops <- op:
			case <-ctx.Done():
				return
			}
		}
	}()
	written := 0
	for op := range ops {
		if err := w.Write(ctx, op); err != nil {
			cancel()
			for range ops { // let the generator end before gen is read again
			}
			return written, err
		}
		written += op.Events()
	}
	return written, w.Flush(ctx)
}

// PaceResult is what a paced write achieved.
type PaceResult struct {
	Events  int
	Elapsed time.Duration
	// MaxLate is the most a tick's writes finished after the scheduled
	// time of their first event.
	MaxLate time.Duration
}

// Pace writes the workload at rate events per second for d: every tick
// (10 ms) it writes the events due by then, with the ops of a business
// step already begun, and flushes. The workload's stamps are then the
// write time (its Clock should be real).
func Pace(ctx context.Context, gen *Workload, w *Writer, rate int, d time.Duration) (PaceResult, error) {
	const tick = 10 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	var res PaceResult
	total := int(float64(rate) * d.Seconds())
	for res.Events < total {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-t.C:
		}
		due := min(total, int(float64(rate)*time.Since(start).Seconds()))
		if res.Events >= due {
			continue
		}
		first := time.Duration(float64(res.Events) / float64(rate) * float64(time.Second))
		for res.Events < due || gen.Pending() > 0 {
			op := gen.Next()
			if err := w.Write(ctx, op); err != nil {
				return res, err
			}
			res.Events += op.Events()
		}
		if err := w.Flush(ctx); err != nil {
			return res, err
		}
		res.MaxLate = max(res.MaxLate, time.Since(start)-first)
	}
	res.Elapsed = time.Since(start)
	return res, nil
}
