package event

import "go.mongodb.org/mongo-driver/v2/bson"

// Sequenced is an event ready to publish, in order. Token is the resume
// token after it, or nil when the event is inside a transaction (a resume
// point there would split the transaction).
type Sequenced struct {
	Event *Event
	Token bson.Raw
}

// TxnSequencer numbers the events of MongoDB multi-document transactions
// (same lsid and txnNumber) in change-stream order and holds back each
// transaction's newest event until the next change (or an idle stream)
// says whether it was the last, so Txn.Last is exact without a timeout.
// The tailer and the oplog replay use it; the zero value is ready.
type TxnSequencer struct {
	held    *Event
	heldTxn *ChangeTxn
	heldTok bson.Raw
	index   int
}

// Add takes the next document change (txn nil outside a transaction) with
// the resume token after it and returns what can be published now, in
// order: the event held before it, and ev itself unless ev is held.
func (s *TxnSequencer) Add(ev *Event, txn *ChangeTxn, tok bson.Raw) []Sequenced {
	var out []Sequenced
	same := s.held != nil && txn != nil && *txn == *s.heldTxn
	if s.held != nil {
		out = append(out, s.release(!same))
	}
	if same {
		s.index++
	} else {
		s.index = 0
	}
	if txn == nil {
		return append(out, Sequenced{Event: ev, Token: tok})
	}
	ev.Source.Txn = &Txn{LSID: txn.LSID, Number: txn.Number, Index: s.index}
	s.held, s.heldTxn, s.heldTok = ev, txn, tok
	return out
}

// Flush releases the held event as its transaction's last: the stream
// went idle or a non-document change came, and a transaction's events are
// contiguous in the oplog.
func (s *TxnSequencer) Flush() []Sequenced {
	if s.held == nil {
		return nil
	}
	return []Sequenced{s.release(true)}
}

// Holding reports whether an event is held back.
func (s *TxnSequencer) Holding() bool { return s.held != nil }

func (s *TxnSequencer) release(last bool) Sequenced {
	out := Sequenced{Event: s.held}
	s.held.Source.Txn.Last = last
	if last {
		out.Token = s.heldTok
	}
	s.held, s.heldTxn, s.heldTok = nil, nil, nil
	return out
}
