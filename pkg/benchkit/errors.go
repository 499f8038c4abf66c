package benchkit

import "errors"

// ErrWorkload means MongoDB did not hold what the workload generated (an
// update or delete found no document): the generator's state machine and
// the database disagree, and the benchmark's numbers would be about
// another workload. It is a bug, never retried.
var ErrWorkload = errors.New("benchkit: MongoDB disagrees with the generated workload")

// ErrCapture means the captured stream is not the workload's (an event
// of a collection without a transform, a decoded id that differs from the
// published one, a prologue that is not the sellers): the ceilings would
// not measure the same data.
var ErrCapture = errors.New("benchkit: the captured stream is not the workload")

// ErrIncomplete means a ceiling run ended before every event was applied
// (its context ended, or JetStream stopped delivering).
var ErrIncomplete = errors.New("benchkit: ceiling run incomplete")
