package bus

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// An async publish whose acknowledgement never comes (here: the subject's
// only listener swallows it, as a request lost with a dead node would be)
// fails with ErrAsyncPublishTimeout instead of never resolving, so the
// tailer resumes from its checkpoint rather than waiting for ever.
func TestAsyncPublishAckTimesOut(t *testing.T) {
	emb, err := StartEmbedded(EmbeddedConfig{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := nats.Connect(emb.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.Subscribe("blackhole.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc, jetStreamOptions(16, 200*time.Millisecond)...)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.PublishAsync("blackhole.x", []byte("lost"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ack.Ok():
		t.Fatal("acknowledged by nobody")
	case err := <-ack.Err():
		if !errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
			t.Fatalf("future failed with %v, want ErrAsyncPublishTimeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the future never resolved: no ack timeout")
	}
}
