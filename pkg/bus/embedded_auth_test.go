package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
)

// TestEmbeddedBeyondLoopbackNeedsAuth: the embedded server refuses to
// listen beyond loopback without a credential, before it takes the store
// (a corrected start on the same store works).
func TestEmbeddedBeyondLoopbackNeedsAuth(t *testing.T) {
	dir := t.TempDir()
	for _, host := range []string{"0.0.0.0", "::", "10.1.2.3", "cdc.internal"} {
		t.Run(host, func(t *testing.T) {
			emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Host: host, Port: -1, StoreDir: dir}, nil)
			if err == nil {
				emb.Shutdown()
				t.Fatalf("started on %s without a credential", host)
			}
			if !errors.Is(err, bus.ErrEmbeddedNeedsAuth) {
				t.Fatalf("error %v is not ErrEmbeddedNeedsAuth", err)
			}
		})
	}
	for _, bad := range []bus.EmbeddedAuth{{User: "cdc"}, {Password: "p"}, {User: "cdc", Password: "p", Token: "t"}} {
		if emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Host: "0.0.0.0", Port: -1, StoreDir: dir, Auth: bad}, nil); err == nil {
			emb.Shutdown()
			t.Fatalf("started with the half-set credential %+v", bad)
		}
	}
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Host: "127.0.0.1", Port: -1, StoreDir: dir}, nil)
	if err != nil {
		t.Fatalf("loopback without a credential (today's default): %v", err)
	}
	emb.Shutdown()
}

// TestEmbeddedAuthRequired: with a credential the embedded server admits
// only clients that present it; the process's own connection (ClientOptions
// of the same nats.auth) declares the streams and reads them.
func TestEmbeddedAuthRequired(t *testing.T) {
	for _, tc := range []struct {
		name  string
		host  string
		auth  config.NATSAuthConfig
		wrong config.NATSAuthConfig
	}{
		{"user and password beyond loopback", "0.0.0.0", config.NATSAuthConfig{User: "cdc", Password: "s3cret-pw"}, config.NATSAuthConfig{User: "cdc", Password: "guess"}},
		{"token beyond loopback", "0.0.0.0", config.NATSAuthConfig{Token: "t0ken-abc"}, config.NATSAuthConfig{Token: "guess"}},
		{"user and password on loopback", "127.0.0.1", config.NATSAuthConfig{User: "cdc", Password: "s3cret-pw"}, config.NATSAuthConfig{User: "other", Password: "s3cret-pw"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := config.NATSConfig{Auth: tc.auth}
			emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Host: tc.host, Port: -1, StoreDir: t.TempDir(), Auth: bus.EmbeddedAuthFromConfig(n)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(emb.Shutdown)
			n.URL = emb.ClientURL()

			// The process itself: connect with the credential, declare,
			// publish.
			nc, err := connect(t, n)
			if err != nil {
				t.Fatalf("connect with the credential: %v", err)
			}
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			streams := bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: 1,
				DedupWindow: time.Minute, MaxBytes: -1, CheckpointBucket: "cdc_checkpoints"}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := bus.Ensure(ctx, js, streams); err != nil {
				t.Fatal(err)
			}
			if _, err := js.Publish(ctx, "cdc.escrow.payments", []byte(`{"forged":false}`)); err != nil {
				t.Fatal(err)
			}
			if msg, err := readFirst(ctx, js); err != nil || string(msg) != `{"forged":false}` {
				t.Fatalf("the process reads its stream: %q, %v", msg, err)
			}

			// Anyone else: no credential, or a wrong one, is refused
			// before it can read, publish or purge anything.
			for name, auth := range map[string]config.NATSAuthConfig{"no credential": {}, "wrong credential": tc.wrong} {
				opts, err := bus.ClientOptions(config.NATSConfig{Auth: auth})
				if err != nil {
					t.Fatal(err)
				}
				other, err := nats.Connect(emb.ClientURL(), append(opts, nats.NoReconnect())...)
				if err == nil {
					other.Close()
					t.Fatalf("%s: connected", name)
				}
				if !errors.Is(err, nats.ErrAuthorization) {
					t.Fatalf("%s: %v, want an authorization violation", name, err)
				}
			}
		})
	}
}

// readFirst reads the change stream's first message with an ephemeral
// consumer.
func readFirst(ctx context.Context, js jetstream.JetStream) ([]byte, error) {
	cons, err := js.OrderedConsumer(ctx, "CDC", jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		return nil, err
	}
	return msg.Data(), nil
}
