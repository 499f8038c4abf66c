package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/amanat/cdc/pkg/backoff"
	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/fault"
	"github.com/amanat/cdc/pkg/state"
)

// The consumer loop's unit tests drive applyLoop.run with chunks, as the
// reader would hand them, against a fake applier, fake messages and a fake
// JetStream that write what happens to one journal: the tests compare the
// journal's order (commit before acknowledgement, DLQ copy after commit).

// journal is the ordered record of what the fakes saw.
type journal struct {
	mu    sync.Mutex
	lines []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.lines = append(j.lines, fmt.Sprintf(format, args...))
}

func (j *journal) String() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return strings.Join(j.lines, "; ")
}

// fakeMsg is a delivered message; the methods the sink does not call
// panic (nil jetstream.Msg).
type fakeMsg struct {
	jetstream.Msg
	seq uint64
	j   *journal
	// data is the body the reader decodes.
	data []byte
}

func (m *fakeMsg) Ack() error        { m.j.add("ack %d", m.seq); return nil }
func (m *fakeMsg) InProgress() error { m.j.add("progress %d", m.seq); return nil }
func (m *fakeMsg) Data() []byte      { return m.data }
func (m *fakeMsg) Headers() nats.Header {
	return nats.Header{}
}
func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}}, nil
}

// fakeApplier commits every batch unless errs says otherwise (one entry
// per call, nil: commit); result, when set, is what a commit returns.
type fakeApplier struct {
	j      *journal
	errs   []error
	result func(b Batch) Result
	// onApply runs at the start of every call (invariant checks).
	onApply func(b Batch)
	calls   int
}

func (f *fakeApplier) Apply(_ context.Context, b Batch) (Result, error) {
	if f.onApply != nil {
		f.onApply(b)
	}
	call := f.calls
	f.calls++
	f.j.add("apply %s", batchSeqs(b))
	if call < len(f.errs) && f.errs[call] != nil {
		return Result{}, f.errs[call]
	}
	f.j.add("commit floor %d", b.floor)
	if f.result != nil {
		return f.result(b), nil
	}
	return Result{}, nil
}

// batchSeqs lists b's sequences: units in order, then spilled parts
// (which the assembler hands over in no fixed order) sorted.
func batchSeqs(b Batch) string {
	var parts []string
	for _, u := range b.units {
		for _, it := range u.items {
			parts = append(parts, fmt.Sprint(it.seq))
		}
	}
	spill := make([]uint64, len(b.spill))
	for i, it := range b.spill {
		spill[i] = it.seq
	}
	slices.Sort(spill)
	for _, seq := range spill {
		parts = append(parts, fmt.Sprintf("spill:%d", seq))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// fakeJS takes the DLQ copies (failing them with fail) and answers the
// reader's gap check with stream.
type fakeJS struct {
	jetstream.JetStream
	j      *journal
	fail   error
	msgs   []*nats.Msg
	stream jetstream.Stream
}

func (f *fakeJS) PublishMsg(_ context.Context, m *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	f.j.add("publish %s", m.Header.Get(jetstream.MsgIDHeader))
	f.msgs = append(f.msgs, m)
	return &jetstream.PubAck{}, f.fail
}

func (f *fakeJS) Stream(context.Context, string) (jetstream.Stream, error) {
	if f.stream == nil {
		return nil, errors.New("no stream in this test")
	}
	return f.stream, nil
}

// testSink is a Sink with fakes around its consumer loop: no Postgres, no
// NATS, retries without waiting.
func testSink(t *testing.T, a batchApplier, js jetstream.JetStream, batchSize int) *Sink {
	// BatchWait only bounds the reader's wait for more: the fakes never
	// make it wait.
	cfg := Config{Consumer: "cdc-sink", BatchSize: batchSize, BatchWait: time.Second,
		Streams: bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ"}}
	cfg.defaults()
	return &Sink{js: js, cfg: cfg, log: zaptest.NewLogger(t), metrics: noMetrics{}, applier: a, retry: backoff.Policy{}}
}

// single is a delivered event outside a transaction.
func single(j *journal, seq uint64) *item {
	return &item{seq: seq, msg: &fakeMsg{seq: seq, j: j},
		ev: &event.Event{ID: fmt.Sprintf("e%d", seq), Source: event.Source{DB: "escrow", Coll: "users"}}}
}

// part is a delivered event of Mongo transaction lsid:1.
func part(j *journal, seq uint64, lsid string, idx int, last bool) *item {
	it := txnItem(seq, lsid, 1, idx, last)
	it.msg = &fakeMsg{seq: seq, j: j}
	return it
}

var errReaderDone = errors.New("reader done (test)")

// runChunks runs the loop over chunks, then a last chunk with
// errReaderDone, and returns the loop's error (errReaderDone when it
// consumed everything).
func runChunks(t *testing.T, s *Sink, chunks ...[]*item) (*applyLoop, error) {
	t.Helper()
	ch := make(chan chunk, len(chunks)+1)
	for _, c := range chunks {
		ch <- chunk{items: c}
	}
	ch <- chunk{err: errReaderDone}
	l := &applyLoop{s: s, asm: newAssembler()}
	return l, l.run(t.Context(), ch)
}

// Messages are acknowledged only after the batch that resolves them
// committed; a batch that fails is retried whole and acknowledges
// nothing; five failed tries in a row mark its messages in progress so
// they are not redelivered while Postgres is away.
func TestApplyLoopAcknowledgesOnlyAfterCommit(t *testing.T) {
	retryable := errors.New("connection reset (test)")
	for _, c := range []struct {
		name  string
		errs  []error
		hook  func(context.Context) error
		want  string
		err   error // the loop's error (errors.Is)
		class fault.Class
		// committed is the position the reader acknowledges
		// redeliveries by, after the loop.
		committed uint64
	}{
		{name: "commit, then ack", want: "apply [1 2]; commit floor 2; ack 1; ack 2; apply [3]; commit floor 3; ack 3",
			err: errReaderDone, committed: 3},
		{name: "a retryable failure retries the same batch", errs: []error{retryable},
			want: "apply [1 2]; apply [1 2]; commit floor 2; ack 1; ack 2; apply [3]; commit floor 3; ack 3", err: errReaderDone, committed: 3},
		{name: "five failures in a row keep the messages in progress", errs: []error{retryable, retryable, retryable, retryable, retryable},
			want: "apply [1 2]; apply [1 2]; apply [1 2]; apply [1 2]; apply [1 2]; progress 1; progress 2; apply [1 2]; commit floor 2; ack 1; ack 2; apply [3]; commit floor 3; ack 3",
			err:  errReaderDone, committed: 3},
		{name: "a fatal error stops the loop unacknowledged", errs: []error{fault.Fatal.Errorf("schema (test)")},
			want: "apply [1 2]", class: fault.Fatal, committed: 0},
		{name: "a lost fence stops the loop unacknowledged", errs: []error{fmt.Errorf("check: %w", state.ErrFenced)},
			want: "apply [1 2]", err: state.ErrFenced, committed: 0},
		{name: "a hook abort after commit acknowledges nothing", hook: func(context.Context) error { return errors.New("die") },
			want: "apply [1 2]; commit floor 2", err: ErrHookAbort, committed: 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			j := &journal{}
			s := testSink(t, &fakeApplier{j: j, errs: c.errs}, &fakeJS{j: j}, 100)
			if c.hook != nil {
				s.hooks = &Hooks{AfterCommit: c.hook}
			}
			_, err := runChunks(t, s, []*item{single(j, 1), single(j, 2)}, []*item{single(j, 3)})
			if c.err != nil && !errors.Is(err, c.err) {
				t.Fatalf("loop error = %v, want %v", err, c.err)
			}
			if c.err == nil && Classify(err) != c.class {
				t.Fatalf("loop error = %v (class %s), want class %s", err, Classify(err), c.class)
			}
			if got := j.String(); got != c.want {
				t.Fatalf("journal:\n got %s\nwant %s", got, c.want)
			}
			if got := s.committed.Load(); got != c.committed {
				t.Fatalf("committed position = %d, want %d", got, c.committed)
			}
		})
	}
}

// The floor recorded with a batch, and the committed position the reader
// acknowledges redeliveries by, never pass a message no committed batch
// resolved: a part of an open transaction held in memory keeps both
// below it until its transaction commits whole or the part is set aside
// (spilled) by the batch that records the floor past it.
func TestApplyLoopFloorNeverPassesAnUnresolvedMessage(t *testing.T) {
	for _, c := range []struct {
		name      string
		batchSize int
		chunks    func(j *journal) [][]*item
		want      string
	}{
		{name: "single events", batchSize: 100,
			chunks: func(j *journal) [][]*item { return [][]*item{{single(j, 1), single(j, 2)}, {single(j, 3)}} },
			want:   "apply [1 2]; commit floor 2; apply [3]; commit floor 3"},
		{name: "an open transaction holds the floor below its first part", batchSize: 100,
			chunks: func(j *journal) [][]*item {
				return [][]*item{{single(j, 1), part(j, 2, "s", 0, false), single(j, 3)}, {single(j, 4)}, {part(j, 5, "s", 1, true)}}
			},
			want: "apply [1 3]; commit floor 1; apply [4]; commit floor 1; apply [2 5]; commit floor 5"},
		{name: "nothing resolved, nothing applied", batchSize: 100,
			chunks: func(j *journal) [][]*item {
				return [][]*item{{part(j, 1, "s", 0, false)}, {}, {part(j, 2, "s", 1, true)}}
			},
			want: "apply [1 2]; commit floor 2"},
		{name: "a redelivered part is acknowledged with its transaction, applied once", batchSize: 100,
			chunks: func(j *journal) [][]*item {
				return [][]*item{{part(j, 1, "s", 0, false), part(j, 2, "s", 0, false)}, {part(j, 3, "s", 1, true)}}
			},
			want: "apply [1 3 2]; commit floor 3"},
		{name: "spilled parts let the floor pass them in the batch that sets them aside", batchSize: 2,
			chunks: func(j *journal) [][]*item {
				return [][]*item{{part(j, 1, "s", 0, false), part(j, 2, "s", 1, false), single(j, 3)}, {single(j, 4)}}
			},
			want: "apply [3 spill:1 spill:2]; commit floor 3; apply [4]; commit floor 4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			j := &journal{}
			resolved := map[uint64]bool{} // by a committed batch
			var s *Sink
			a := &fakeApplier{j: j}
			a.onApply = func(b Batch) {
				// What the reader acknowledges by must be resolved.
				for seq := uint64(1); seq <= s.committed.Load(); seq++ {
					if !resolved[seq] {
						t.Errorf("committed position %d passes sequence %d, which no committed batch resolved", s.committed.Load(), seq)
					}
				}
				for _, u := range b.units {
					for _, it := range u.items {
						resolved[it.seq] = true
					}
				}
				for _, it := range b.spill {
					resolved[it.seq] = true
				}
				for seq := uint64(1); seq <= b.floor; seq++ {
					if !resolved[seq] {
						t.Errorf("batch %s records floor %d past sequence %d, which it does not resolve", batchSeqs(b), b.floor, seq)
					}
				}
			}
			s = testSink(t, a, &fakeJS{j: j}, c.batchSize)
			l, err := runChunks(t, s, c.chunks(j)...)
			if !errors.Is(err, errReaderDone) {
				t.Fatalf("loop error = %v, want the reader's end", err)
			}
			var got []string
			for _, line := range j.lines {
				if !strings.HasPrefix(line, "ack ") {
					got = append(got, line)
				}
			}
			if strings.Join(got, "; ") != c.want {
				t.Fatalf("batches:\n got %s\nwant %s", strings.Join(got, "; "), c.want)
			}
			if s.committed.Load() != l.floor {
				t.Fatalf("committed position %d, recorded floor %d: they must agree after a commit", s.committed.Load(), l.floor)
			}
		})
	}
}

// A batch's dead letters are copied to the DLQ stream after it committed
// (cdc.dead_letters, written by the commit, is the record) and before its
// messages are acknowledged; a copy that cannot be published does not
// hold the acknowledgement back.
func TestApplyLoopCopiesDeadLettersAfterCommit(t *testing.T) {
	long := strings.Repeat("r", 2000)
	for _, c := range []struct {
		name string
		fail error
	}{
		{name: "published"},
		{name: "not published", fail: errors.New("no responders (test)")},
	} {
		t.Run(c.name, func(t *testing.T) {
			j := &journal{}
			js := &fakeJS{j: j, fail: c.fail}
			a := &fakeApplier{j: j, result: func(b Batch) Result {
				it := b.units[0].items[0]
				it.docKey, it.raw, it.reject = "k7", []byte("envelope"), errors.New(long)
				return Result{DeadLettered: 1, dead: []*item{it}}
			}}
			s := testSink(t, a, js, 100)
			if _, err := runChunks(t, s, []*item{single(j, 7)}); !errors.Is(err, errReaderDone) {
				t.Fatalf("loop error = %v, want the reader's end", err)
			}
			if want := "apply [7]; commit floor 7; publish dlq:e7; ack 7"; j.String() != want {
				t.Fatalf("journal:\n got %s\nwant %s", j.String(), want)
			}
			m := js.msgs[0]
			for h, want := range map[string]string{"Cdc-Error-Class": string(state.ClassPoison), "Cdc-Doc-Key": "k7",
				"Cdc-Stream-Seq": "7", "Cdc-Stream": "CDC", "Cdc-Reason": long[:1024], "Content-Type": event.ContentType} {
				if got := m.Header.Get(h); got != want {
					t.Errorf("header %s = %.40q, want %.40q", h, got, want)
				}
			}
			if m.Subject != "cdc_dlq.escrow.users" || string(m.Data) != "envelope" {
				t.Errorf("DLQ copy %s %q, want cdc_dlq.escrow.users \"envelope\"", m.Subject, m.Data)
			}
		})
	}
}

// fakeIter delivers msgs, then reports a quiet period (as Next does when
// its context's deadline passes).
type fakeIter struct {
	jetstream.MessagesContext
	msgs []jetstream.Msg
}

func (f *fakeIter) Next(...jetstream.NextOpt) (jetstream.Msg, error) {
	if len(f.msgs) == 0 {
		return nil, context.DeadlineExceeded
	}
	m := f.msgs[0]
	f.msgs = f.msgs[1:]
	return m, nil
}

// fakeStream answers the gap check's GetMsg.
type fakeStream struct {
	jetstream.Stream
	err error
}

func (f *fakeStream) GetMsg(context.Context, uint64, ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	return &jetstream.RawStreamMsg{}, f.err
}

// The reader (collect, with undecodable bodies: decoding is not its
// concern here) takes delivered sequences in order from the position on: a
// redelivery the committed position covers is acknowledged (its ack was
// lost), one it does not cover is left to its first delivery, still in
// the apply loop; a sequence past the next one is a gap only when the
// stream no longer holds the next one, else a delivery problem the sink
// re-reads from its position for.
func TestCollectTakesSequencesInOrder(t *testing.T) {
	for _, c := range []struct {
		name      string
		committed uint64
		next      uint64
		deliver   []uint64
		stream    jetstream.Stream
		wantSeqs  string
		wantAcks  string
		err       error
	}{
		{name: "in order", next: 5, deliver: []uint64{5, 6, 7}, wantSeqs: "5 6 7"},
		{name: "redeliveries", committed: 3, next: 6, deliver: []uint64{2, 3, 4, 5, 6}, wantSeqs: "6", wantAcks: "ack 2; ack 3"},
		{name: "a gap the stream confirms", next: 5, deliver: []uint64{5, 8}, stream: &fakeStream{err: jetstream.ErrMsgNotFound},
			wantSeqs: "5", err: ErrStreamGap},
		{name: "skipped messages the stream holds", next: 5, deliver: []uint64{5, 8}, stream: &fakeStream{},
			wantSeqs: "5", err: ErrDeliverySkipped},
		{name: "skipped messages the stream cannot tell about", next: 5, deliver: []uint64{6},
			err: ErrDeliverySkipped},
	} {
		t.Run(c.name, func(t *testing.T) {
			j := &journal{}
			s := testSink(t, &fakeApplier{j: j}, &fakeJS{j: j, stream: c.stream}, 100)
			s.committed.Store(c.committed)
			it := &fakeIter{}
			for _, seq := range c.deliver {
				it.msgs = append(it.msgs, &fakeMsg{seq: seq, j: j, data: []byte("not bson")})
			}
			items, _, err := s.collect(t.Context(), it, c.next)
			if !errors.Is(err, c.err) {
				t.Fatalf("collect error = %v, want %v", err, c.err)
			}
			var seqs []string
			for _, it := range items {
				seqs = append(seqs, fmt.Sprint(it.seq))
			}
			if got := strings.Join(seqs, " "); got != c.wantSeqs {
				t.Fatalf("items %q, want %q", got, c.wantSeqs)
			}
			if got := j.String(); got != c.wantAcks {
				t.Fatalf("acknowledged %q, want %q", got, c.wantAcks)
			}
		})
	}
}
