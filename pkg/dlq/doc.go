// Package dlq is the operator's view of dead letters: list and show them
// with their history, retry them (re-apply through the same sink applier,
// with its version guard and whole transactions), drop them or reopen
// them. cdc.dead_letters in Postgres is the record of truth (its SQL is in
// pkg/state); the DLQ stream holds copies for other consumers.
//
// A document with an open dead letter parks its later events (they are
// dead-lettered with class "parked"). Retrying a document's entries
// re-applies them in source order in one transaction; dropping them
// closes the gap without applying, and the document applies normally
// again from its next event; reopening a dropped or retried entry makes it
// open (and parking) again.
//
// The events of one Mongo transaction are dead-lettered together and are
// acted on together: every selection is widened to the open entries of
// the same transactions. A retry whose transactions are still not whole
// among the open entries is refused (IncompleteError) and changes
// nothing. A retry closes (status retried) exactly the entries whose
// events it applied or found superseded; an entry dead-lettered again, or
// left out because its transaction was not whole, stays open with the
// attempt in its history. The first class, field and reason of an entry
// are never overwritten.
package dlq
