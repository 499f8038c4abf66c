package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/backoff"
	"github.com/amanat/cdc/pkg/redact"
)

// Connect opens a NATS connection that reconnects forever and a JetStream
// context on it. maxPending bounds in-flight async publishes (0 keeps the
// library default). extra are further options, typically ClientOptions
// (credentials and TLS). Cancelling ctx only abandons the initial attempt.
//
// The first connection is retried until ctx ends, except when the server
// refused the credential or its certificate did not verify
// (PermanentConnectError): that error returns at once. Later, an
// authorization error while reconnecting is retried like an outage
// (nats.IgnoreAuthErrorAbort; nats.go would otherwise give up after two),
// so a credential rotated on the server first heals by itself.
func Connect(ctx context.Context, url, name string, maxPending int, log *zap.Logger, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	if log == nil {
		log = zap.NewNop()
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1), // never buffer publishes while disconnected: fail them and retry from the checkpoint
		nats.RetryOnFailedConnect(false),
		nats.IgnoreAuthErrorAbort(),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", zap.String("url", redact.URL(c.ConnectedUrl())))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats async error", zap.String("subject", subj), zap.Error(err))
		}),
	}
	opts = append(opts, extra...)
	var (
		nc  *nats.Conn
		err error
	)
	// Retry the first connection until ctx ends: a NATS outage at start-up
	// is the same outage as one later on.
	retry := backoff.New(connectBackoff)
	for {
		nc, err = nats.Connect(url, opts...)
		if err == nil {
			break
		}
		if PermanentConnectError(err) {
			return nil, nil, fmt.Errorf("nats connect %s: %w", redact.URL(url), err)
		}
		if retry.Attempt() == 0 {
			log.Warn("nats not reachable, retrying", zap.String("url", redact.URL(url)), zap.Error(err))
		}
		wait := time.NewTimer(retry.Next())
		select {
		case <-ctx.Done():
			wait.Stop()
			return nil, nil, fmt.Errorf("nats connect %s: %w (last error: %v)", redact.URL(url), ctx.Err(), err)
		case <-wait.C:
		}
	}
	// An async publish whose acknowledgement never comes (the request or
	// its reply lost with a cluster node that died) would otherwise never
	// resolve: nats.go has no ack timeout unless one is set, and the
	// tailer would wait on it for ever. With it, the future fails with
	// jetstream.ErrAsyncPublishTimeout and the tailer resumes from its
	// checkpoint (duplicates are dropped by Nats-Msg-Id).
	js, err := jetstream.New(nc, jetStreamOptions(maxPending, PublishAckTimeout)...)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// jetStreamOptions are the JetStream context's options: async publishes
// time out after ackTimeout, at most maxPending in flight (0: the
// library's default).
func jetStreamOptions(maxPending int, ackTimeout time.Duration) []jetstream.JetStreamOpt {
	opts := []jetstream.JetStreamOpt{jetstream.WithPublishAsyncTimeout(ackTimeout)}
	if maxPending > 0 {
		opts = append(opts, jetstream.WithPublishAsyncMaxPending(maxPending))
	}
	return opts
}

// PublishAckTimeout bounds the wait for an async publish's
// acknowledgement: longer than a JetStream leader election (nats-server's
// Raft election timer is 4-9 s) and a slow disk, short enough that a lost
// acknowledgement is noticed.
const PublishAckTimeout = 30 * time.Second

// connectBackoff paces the first connection's retries: short waits at
// first (a server starting beside this process answers within a second),
// at most 3 s, with equal jitter so that the instances of a fleet
// restarted together do not reconnect in step.
var connectBackoff = backoff.Policy{Initial: 100 * time.Millisecond, Max: 3 * time.Second, Jitter: 0.5}
