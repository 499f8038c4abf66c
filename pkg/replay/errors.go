package replay

import "errors"

// ErrTargetRefused: the Postgres target is neither in the allow-list nor
// confirmed. The command line exits with code 2.
var ErrTargetRefused = errors.New("target not allowed")

// ErrIncomplete: a Mongo transaction's events were not all in the
// replayed range, so none of them was applied.
var ErrIncomplete = errors.New("incomplete transaction in range")

// ErrBadRange: the requested range is empty or inverted.
var ErrBadRange = errors.New("bad range")

// ErrUnknownLane: the lane named is not a configured sink lane (or no
// lanes are configured).
var ErrUnknownLane = errors.New("unknown lane")
