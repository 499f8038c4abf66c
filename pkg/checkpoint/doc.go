// Package checkpoint is the tailer's durable resume point and the one place
// that knows its shape: the record (Checkpoint), its persisted format
// (Encode, Decode: version 3, versions 1 and 2 still read, pinned by golden
// files in testdata/), the revision-checked JetStream key-value store it
// lives in (KVStore, under Key(db)), the identities of its writers
// (NewOwner, HandoffOwner) and the cluster time it stands for
// (Checkpoint.EffectiveTime).
//
// Three components read or write it and none of them owns the others: the
// tailer writes it after JetStream acknowledged the events it covers (and
// fences other tailers with its revision), a snapshot's hand-off writes it
// so streaming covers every change from the snapshot's start on, and `cdc
// status` and the oplog headroom monitor read it. Keeping it here, below
// all three, is what lets the snapshot and the status tool use it without
// importing the tailer.
//
// Every write is compare-and-set on the key's revision: a writer whose
// revision is stale gets a *MovedError (errors.Is ErrMoved) naming what is
// stored now, never a silent overwrite.
package checkpoint
