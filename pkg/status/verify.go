package status

import (
	"context"
	"time"

	"github.com/amanat/cdc/pkg/state"
)

// VerifyWarnAge is how recent the continuous verifier's last mismatch
// must be for the report to warn about it: a mismatch is a divergence an
// operator must look at, but the record stays after the repair.
const VerifyWarnAge = 24 * time.Hour

// VerifyStatus is what the continuous verifier (verify.continuous.rate)
// recorded in cdc.verify_mismatches. Report.Verify is nil while nothing
// was ever recorded (or the verifier never ran).
type VerifyStatus struct {
	// Recorded counts the documents-and-checks that differed.
	Recorded int64 `json:"recorded"`
	// Last is the most recently confirmed mismatch.
	Last  *VerifyMismatch `json:"last,omitempty"`
	Error string          `json:"error,omitempty"`
}

// VerifyMismatch is one confirmed mismatch.
type VerifyMismatch struct {
	Collection string `json:"collection"`
	// DocKey is the document's key (its _id as cdc.doc_versions keys it).
	DocKey string `json:"doc_key"`
	// Check is the verify check that failed.
	Check  string `json:"check"`
	Table  string `json:"table,omitempty"`
	Column string `json:"column,omitempty"`
	// Mongo and Postgres are the compared values, when known.
	Mongo    string `json:"mongo,omitempty"`
	Postgres string `json:"postgres,omitempty"`
	Detail   string `json:"detail"`
	// At is when it was last confirmed (AgoSeconds before the report),
	// FirstSeen the first time; Times counts the confirmations (one per
	// pass of the verifier while it lasts).
	At         time.Time `json:"at"`
	AgoSeconds float64   `json:"ago_seconds"`
	FirstSeen  time.Time `json:"first_seen"`
	Times      int64     `json:"times"`
}

// verify reads the last confirmed mismatch.
func (c *collector) verify(ctx context.Context) {
	if c.src.pg == nil {
		return // the Postgres problem says it; nothing to show
	}
	qctx, cancel := c.ctx(ctx)
	last, n, ok, err := state.VerifyMismatches(qctx, c.src.pg)
	cancel()
	switch {
	case err != nil:
		c.r.Verify = &VerifyStatus{Error: oneLine(err)}
	case !ok:
	default:
		c.r.Verify = &VerifyStatus{Recorded: n, Last: &VerifyMismatch{Collection: last.Collection, DocKey: last.DocKey, Check: last.Check,
			Table: last.Table, Column: last.Column, Mongo: last.Mongo, Postgres: last.Postgres, Detail: last.Detail,
			At: last.LastSeen.UTC(), AgoSeconds: max(c.opts.now().Sub(last.LastSeen).Seconds(), 0), FirstSeen: last.FirstSeen.UTC(), Times: last.Times}}
	}
}

// judgeVerify warns about a mismatch confirmed within VerifyWarnAge.
func (c *collector) judgeVerify(warn func(string, ...any), section func(name, err string)) {
	v := c.r.Verify
	if v == nil {
		return
	}
	section("verify mismatches", v.Error)
	if m := v.Last; m != nil && m.AgoSeconds < VerifyWarnAge.Seconds() {
		warn("continuous verification: %s %s failed %s %s ago (%s): %s; %d document(s) recorded in cdc.verify_mismatches",
			m.Collection, m.DocKey, m.Check, secs(m.AgoSeconds), m.At.Format(time.RFC3339), m.Detail, v.Recorded)
	}
}

// verifyText writes the section (nothing while there is no record).
func verifyText(p printer, v *VerifyStatus) {
	if v == nil {
		return
	}
	p("")
	p("Continuous verification (cdc.verify_mismatches)")
	if v.Error != "" {
		p("  unknown: %s", v.Error)
		return
	}
	m := v.Last
	p("  last mismatch\t%s %s, check %s", m.Collection, m.DocKey, m.Check)
	p("  when\t%s ago (%s); first %s, confirmed %d times", secs(m.AgoSeconds), m.At.Format(time.RFC3339), m.FirstSeen.Format(time.RFC3339), m.Times)
	where := m.Table
	if m.Column != "" {
		where += "." + m.Column
	}
	if where != "" {
		p("  where\t%s", where)
	}
	if m.Mongo != "" || m.Postgres != "" {
		p("  values\tmongo %s | postgres %s", m.Mongo, m.Postgres)
	}
	p("  detail\t%s", m.Detail)
	p("  recorded\t%d document(s) and check(s)", v.Recorded)
}
