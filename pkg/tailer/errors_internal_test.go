package tailer

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/fault"
)

type errString string

func (e errString) Error() string { return string(e) }

// TestClassifyServer pins the Mongo server codes and labels: by code and
// label only, never by message text.
func TestClassifyServer(t *testing.T) {
	cases := []struct {
		name  string
		err   error
		class fault.Class
		code  int32
		why   cause
	}{
		{"too large", mongo.CommandError{Code: 10334, Name: "BSONObjectTooLarge"}, fault.Fatal, CodeBSONObjectTooLarge, causeUnknown},
		{"invalid resume token", mongo.CommandError{Code: 260}, fault.Fatal, CodeInvalidResumeToken, causeUnknown},
		{"fatal", mongo.CommandError{Code: 280}, fault.Fatal, CodeChangeStreamFatalError, causeUnknown},
		{"history lost", mongo.CommandError{Code: 286}, fault.Fatal, CodeChangeStreamHistoryLost, causeUnknown},
		{"no post-image", mongo.CommandError{Code: 47}, fault.Fatal, CodeNoMatchingDocument, causeUnknown},
		{"fatal code wins over a label", mongo.CommandError{Code: 280, Labels: []string{LabelResumable}}, fault.Fatal, CodeChangeStreamFatalError, causeUnknown},
		{"fatal code, wrapped", fmt.Errorf("change stream on shop: %w", mongo.CommandError{Code: 286}), fault.Fatal, CodeChangeStreamHistoryLost, causeUnknown},
		{"capped position lost", mongo.CommandError{Code: 136}, fault.Retryable, 0, causeResumable},
		{"labelled resumable", mongo.CommandError{Code: 11602, Labels: []string{LabelResumable}}, fault.Retryable, 0, causeResumable},
		{"unknown server error", mongo.CommandError{Code: 2, Message: "BSONObjectTooLarge 10334"}, fault.Retryable, 0, causeUnknown},
		{"not a server error", errString("connection reset; code 286"), fault.Retryable, 0, causeUnknown},
		{"async publishes stalled", fmt.Errorf("publish: %w", jetstream.ErrTooManyStalledMsgs), fault.Retryable, 0, causeBus},
		{"no stream leader", fmt.Errorf("publish: %w", jetstream.ErrNoStreamResponse), fault.Retryable, 0, causeBus},
		{"no responders", fmt.Errorf("checkpoint: %w", nats.ErrNoResponders), fault.Retryable, 0, causeBus},
		{"ack timeout", fmt.Errorf("publish not acknowledged: %w", jetstream.ErrAsyncPublishTimeout), fault.Retryable, 0, causeBus},
		{"request timeout", nats.ErrTimeout, fault.Retryable, 0, causeBus},
		{"connection closed", fmt.Errorf("publish: %w", nats.ErrConnectionClosed), fault.Retryable, 0, causeBus},
		{"bus text without the sentinel", errString("nats: no responders available for request"), fault.Retryable, 0, causeUnknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			class, code, why := classifyServer(tc.err)
			if class != tc.class || code != tc.code || why != tc.why {
				t.Fatalf("classifyServer = %s %d %s, want %s %d %s", class, code, why, tc.class, tc.code, tc.why)
			}
		})
	}
}

// TestClassify: what stops Run and what it retries, through wrap chains.
func TestClassify(t *testing.T) {
	cause := mongo.CommandError{Code: 280}
	cases := []struct {
		name string
		err  error
		want fault.Class
	}{
		{"fatal mark", fault.Fatal.Errorf("tailer: %w", errString("bad split event")), fault.Fatal},
		{"fatal mark, wrapped", fmt.Errorf("session: %w", fault.Fatal.Wrap(errString("x"))), fault.Fatal},
		{"stream error", fmt.Errorf("run: %w", &StreamError{Code: 280, Cause: cause}), fault.Fatal},
		{"history lost", &HistoryLostError{Cause: cause}, fault.Fatal},
		{"history lost sentinel, wrapped", fmt.Errorf("resume: %w", ErrHistoryLost), fault.Fatal},
		{"lifecycle event", fmt.Errorf("run: %w", &LifecycleError{Database: "shop"}), fault.Fatal},
		{"topology", &TopologyError{Kind: "mongos"}, fault.Fatal},
		{"images", &ImagesError{Database: "shop", Field: "tailer.full_document"}, fault.Fatal},
		{"lane layout", fmt.Errorf("check: %w", bus.ErrLaneLayout), fault.Fatal},
		{"cancelled", fmt.Errorf("publish: %w", context.Canceled), fault.Fatal},
		{"a retryable mark wins", fault.Retryable.Wrap(fmt.Errorf("x: %w", bus.ErrLaneLayout)), fault.Retryable},
		{"a server error classify let through", fmt.Errorf("change stream on shop: %w", mongo.CommandError{Code: 136}), fault.Retryable},
		{"the bus did not answer", fmt.Errorf("publish: %w", nats.ErrNoResponders), fault.Retryable},
		{"deadline", fmt.Errorf("checkpoint: %w", context.DeadlineExceeded), fault.Retryable},
		{"unknown", errors.New("connection reset by peer"), fault.Retryable},
		{"text that reads fatal decides nothing", errString("ChangeStreamHistoryLost (286): change stream history lost"), fault.Retryable},
		{"nil", nil, fault.Retryable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Fatalf("Classify(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}
