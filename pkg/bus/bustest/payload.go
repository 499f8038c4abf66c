package bustest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StartMaxPayload is Start with the server's max_payload set to
// maxPayload bytes (the embedded server of package bus allows 64 MiB), for
// tests of events larger than the bus carries in one message.
func StartMaxPayload(tb testing.TB, maxPayload int32, opts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: "cdc-bustest",
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   tb.TempDir(),
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: maxPayload,
		// The file store may use the disk; memory is not used.
		JetStreamMaxStore:  -1,
		JetStreamMaxMemory: 64 << 20,
	})
	if err != nil {
		tb.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		tb.Fatal("nats-server not ready within 15s")
	}
	tb.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	if got := nc.MaxPayload(); got != int64(maxPayload) {
		tb.Fatalf("server announces max_payload %d, want %d", got, maxPayload)
	}
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return nc, js
}
