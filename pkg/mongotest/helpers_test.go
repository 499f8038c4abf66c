package mongotest

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testCtx returns a context that ends with the test (and after 20s at most).
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startServer starts a server that logs through t.
func startServer(t testing.TB) *Server {
	t.Helper()
	s, err := New(Options{Logf: func(f string, a ...any) {
		if testing.Verbose() {
			t.Logf(f, a...)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// connect returns a driver client for s, disconnected at the end of the test.
func connect(t testing.TB, s *Server, opts ...*options.ClientOptions) *mongo.Client {
	t.Helper()
	ctx := testCtx(t)
	o := options.Client().ApplyURI(s.URI()).SetServerSelectionTimeout(5 * time.Second)
	all := append([]*options.ClientOptions{o}, opts...)
	c, err := mongo.Connect(all...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Disconnect(ctx)
	})
	if err := c.Ping(ctx, nil); err != nil {
		t.Fatalf("ping: %v", err)
	}
	return c
}
