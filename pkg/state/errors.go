package state

import (
	"errors"
	"fmt"
	"time"
)

// ErrFenced means another instance took the consumer: the caller's epoch
// is no longer the row's, and nothing it does in this transaction may
// commit.
var ErrFenced = errors.New("fence lost: another instance took the consumer")

// FencedError is ErrFenced with who holds the consumer now.
type FencedError struct {
	Consumer string
	// Epoch is the caller's; Current and Owner are the row's.
	Epoch, Current int64
	Owner          string
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("consumer %s: fence epoch %d was superseded by epoch %d of %s", e.Consumer, e.Epoch, e.Current, e.Owner)
}

func (e *FencedError) Unwrap() error { return ErrFenced }

// ErrHeld means another live instance holds the consumer: stand by.
var ErrHeld = errors.New("consumer held by another instance")

// HeldError is ErrHeld with the holder, as recorded when it took the
// consumer.
type HeldError struct {
	Consumer string
	Owner    string
	Epoch    int64
	Since    time.Time
}

func (e *HeldError) Error() string {
	if e.Owner == "" {
		return fmt.Sprintf("consumer %s is held by another instance", e.Consumer)
	}
	return fmt.Sprintf("consumer %s is held by %s (epoch %d since %s)", e.Consumer, e.Owner, e.Epoch, e.Since.UTC().Format(time.RFC3339))
}

func (e *HeldError) Unwrap() error { return ErrHeld }

// ErrLockLost means the fence's lock session ended (Postgres restarted,
// the connection broke): the instance must take the consumer again.
var ErrLockLost = errors.New("fence lock session lost")
