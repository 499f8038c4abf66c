// Package bustest starts the real NATS server, embedded, for one test.
package bustest

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/bus"
)

// Start runs an embedded JetStream server (bus.StartEmbedded) on a free
// loopback port, with its store in a temporary directory, and connects to
// it. Server and connection end with the test. opts are the JetStream
// context's options.
func Start(tb testing.TB, opts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	return StartMaxPayload(tb, 0, opts...)
}

// StartMaxPayload is Start with the server's max_payload set to
// maxPayload bytes (0: the embedded default, 64 MiB), for tests of events
// larger than the bus carries in one message.
func StartMaxPayload(tb testing.TB, maxPayload int32, opts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Host: "127.0.0.1", Port: -1, StoreDir: tb.TempDir(), MaxPayload: maxPayload}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(emb.Shutdown)
	nc, err := nats.Connect(emb.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return nc, js
}
