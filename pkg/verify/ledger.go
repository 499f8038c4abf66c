package verify

import (
	"context"
	"fmt"
	"strings"
)

// The money-core collections the ledger reconciliation reads (see
// transforms/README.md, "payments" and "fundsLedger"). Their enums are
// the schema's: escrow_state (none, pending, funded, held, disputed,
// released, refunded, partially_refunded, cancelled), payment_status
// (... refunded, partially_refunded ...) and ledger_entry_type (deposit,
// hold, release, refund, fee, payout, reversal, adjustment).
const (
	paymentsCollection = "payments"
	ledgerCollection   = "fundsLedger"
	ledgerCheckColl    = "ledger"
)

// Ledger checks.
const (
	checkLedgerSettled     = "ledger_settlement_entries"
	checkLedgerDblRelease  = "ledger_double_release"
	checkLedgerDblRefund   = "ledger_double_refund"
	checkLedgerOverpaid    = "ledger_overdisbursed"
	checkLedgerEscrowState = "ledger_escrow_state"
	checkLedgerEntryPay    = "ledger_entry_payment"
)

func (v *Verifier) hasLedger(colls []string) bool {
	var p, l bool
	for _, c := range colls {
		p = p || c == paymentsCollection
		l = l || c == ledgerCollection
	}
	return p && l
}

// ledgerSQL holds the quoted names the ledger queries use.
type ledgerSQL struct {
	P, L                                   string // tables
	pStatus, pState, pAmount, pCurrency    string
	lType, lAmount, lCurrency, lState, lAt string
	lPayment                               string
}

func (v *Verifier) ledgerNames() (*ledgerSQL, error) {
	pp, lp := v.plans[paymentsCollection], v.plans[ledgerCollection]
	if !pp.uuidID || !lp.uuidID {
		return nil, fmt.Errorf("the ledger checks need uuid ids in %s and %s", pp.top.table, lp.top.table)
	}
	has := func(p *mappingPlan, col string) (string, error) {
		for _, c := range p.top.cols {
			if c.name == col {
				return "%s." + quoteIdent(col), nil
			}
		}
		return "", fmt.Errorf("the ledger checks need column %s.%s, which mapping %s does not fill", p.top.table, col, p.m.Source)
	}
	n := &ledgerSQL{P: quoteTable(pp.top.table), L: quoteTable(lp.top.table)}
	var err error
	for _, x := range []struct {
		dst *string
		p   *mappingPlan
		col string
	}{
		{&n.pStatus, pp, "status"}, {&n.pState, pp, "escrow_state"}, {&n.pAmount, pp, "amount"}, {&n.pCurrency, pp, "currency"},
		{&n.lType, lp, "entry_type"}, {&n.lAmount, lp, "amount"}, {&n.lCurrency, lp, "currency"}, {&n.lState, lp, "escrow_state"},
		{&n.lAt, lp, "created_at"},
	} {
		if *x.dst, err = has(x.p, x.col); err != nil {
			return nil, err
		}
	}
	for _, c := range lp.top.cols {
		if c.kind == kRef && c.spec.Ref.Collection == paymentsCollection {
			n.lPayment = "%s." + quoteIdent(c.name)
		}
	}
	if n.lPayment == "" {
		return nil, fmt.Errorf("mapping %s has no reference to %s", lp.m.Source, paymentsCollection)
	}
	return n, nil
}

// ledgerChecks reconciles payments with the funds ledger in Postgres.
func (v *Verifier) ledgerChecks(ctx context.Context) error {
	names := []string{checkLedgerSettled, checkLedgerDblRelease, checkLedgerDblRefund, checkLedgerOverpaid, checkLedgerEscrowState, checkLedgerEntryPay}
	checks := map[string]*Check{}
	for _, n := range names {
		checks[n] = newCheck(n, ledgerCheckColl, v.cfg.Examples)
		v.report.Checks = append(v.report.Checks, checks[n])
	}
	n, err := v.ledgerNames()
	if err != nil {
		for _, c := range checks {
			c.fail(err)
		}
		return nil
	}
	for _, q := range ledgerQueries(n) {
		ch := checks[q.check]
		err := v.recheckable(ctx, ch, func(ctx context.Context, ch *Check) error {
			return v.runLedgerQuery(ctx, ch, q)
		})
		if err != nil && (IsUnreachable(err) || ctx.Err() != nil) {
			return err
		}
	}
	return nil
}

// ledgerQuery is one ledger check: count says how many it looked at, each
// row of sql is one mismatch, which detail turns into an example.
type ledgerQuery struct {
	check, sql, count string
	detail            func(cols []string) Example
}

// ledgerQueries is long because it is a table of the six reconciliation
// queries, one entry per check, each SQL beside the example it reports.
func ledgerQueries(n *ledgerSQL) []ledgerQuery {
	p := func(f string) string { return fmt.Sprintf(f, "p") }
	e := func(f string) string { return fmt.Sprintf(f, "e") }
	pid := "coalesce(pm.legacy_object_id, '')"
	pmap := fmt.Sprintf("LEFT JOIN id_map pm ON pm.collection = %s AND pm.new_id = p.id", quoteLiteral(paymentsCollection))
	emap := fmt.Sprintf("LEFT JOIN id_map em ON em.collection = %s AND em.new_id = e.id", quoteLiteral(ledgerCollection))
	eid := "coalesce(em.legacy_object_id, e.id::text)"
	order := fmt.Sprintf("%s DESC, em.legacy_object_id DESC NULLS LAST, e.id DESC", e(n.lAt))

	return []ledgerQuery{{
		// A released payment has a release entry; a refunded one a refund.
		check: checkLedgerSettled,
		count: fmt.Sprintf(`SELECT count(*) FROM %s p WHERE %s::text = 'released' OR %s::text IN ('refunded', 'partially_refunded') OR %s::text IN ('refunded', 'partially_refunded')`,
			n.P, p(n.pState), p(n.pState), p(n.pStatus)),
		sql: fmt.Sprintf(`SELECT %s, p.id::text, %s::text, coalesce(%s::text, 'NULL'), need.kind
			FROM %s p %s
			CROSS JOIN LATERAL (VALUES
				(CASE WHEN %s::text = 'released' THEN 'release' END),
				(CASE WHEN %s::text IN ('refunded', 'partially_refunded') OR %s::text IN ('refunded', 'partially_refunded') THEN 'refund' END)) AS need(kind)
			WHERE need.kind IS NOT NULL
			  AND NOT EXISTS (SELECT 1 FROM %s e WHERE %s = p.id AND %s::text = need.kind)`,
			pid, p(n.pStatus), p(n.pState), n.P, pmap, p(n.pState), p(n.pState), p(n.pStatus), n.L, e(n.lPayment), e(n.lType)),
		detail: func(c []string) Example {
			return Example{ID: c[0], PGID: c[1], Table: strings.Trim(n.P, `"`),
				Detail: fmt.Sprintf("payment (status %s, escrow_state %s) has no %s entry in the ledger", c[2], c[3], c[4])}
		},
	}, {
		check: checkLedgerDblRelease,
		count: fmt.Sprintf(`SELECT count(DISTINCT %s) FROM %s e WHERE %s::text = 'release'`, e(n.lPayment), n.L, e(n.lType)),
		sql: fmt.Sprintf(`SELECT coalesce(pm.legacy_object_id, ''), %s::text, count(*)::text, string_agg(%s, ', ' ORDER BY %s)
			FROM %s e %s LEFT JOIN id_map pm ON pm.collection = %s AND pm.new_id = %s
			WHERE %s::text = 'release' AND %s IS NOT NULL
			GROUP BY 1, 2 HAVING count(*) > 1`,
			e(n.lPayment), eid, e(n.lAt), n.L, emap, quoteLiteral(paymentsCollection), e(n.lPayment), e(n.lType), e(n.lPayment)),
		detail: func(c []string) Example {
			return Example{ID: c[0], PGID: c[1], Table: strings.Trim(n.L, `"`),
				Detail: fmt.Sprintf("payment released %s times: entries %s", c[2], c[3])}
		},
	}, {
		// Several refunds are fine only while each but the last left the
		// escrow partially refunded and together they do not exceed the
		// payment.
		check: checkLedgerDblRefund,
		count: fmt.Sprintf(`SELECT count(DISTINCT %s) FROM %s e WHERE %s::text = 'refund'`, e(n.lPayment), n.L, e(n.lType)),
		sql: fmt.Sprintf(`WITH r AS (
				SELECT %s AS payment_id, %s::text AS st, %s AS amount, %s AS currency, %s AS eid,
				       row_number() OVER (PARTITION BY %s ORDER BY %s) AS rn
				FROM %s e %s
				WHERE %s::text = 'refund' AND %s IS NOT NULL)
			SELECT coalesce(pm.legacy_object_id, ''), r.payment_id::text, count(*)::text,
			       coalesce((sum(r.amount) FILTER (WHERE r.currency = %s))::text, '0'), coalesce(%s::text, 'none'),
			       string_agg(r.eid || ' (' || coalesce(r.st, 'no state') || ')', ', ' ORDER BY r.rn DESC)
			FROM r LEFT JOIN %s p ON p.id = r.payment_id %s
			GROUP BY pm.legacy_object_id, r.payment_id, %s, %s
			HAVING count(*) > 1 AND (bool_or(r.rn > 1 AND r.st IS DISTINCT FROM 'partially_refunded')
			    OR coalesce(sum(r.amount) FILTER (WHERE r.currency = %s), 0) > coalesce(%s, 0))`,
			e(n.lPayment), e(n.lState), e(n.lAmount), e(n.lCurrency), eid, e(n.lPayment), order, n.L, emap, e(n.lType), e(n.lPayment),
			p(n.pCurrency), p(n.pAmount), n.P, pmap, p(n.pAmount), p(n.pCurrency), p(n.pCurrency), p(n.pAmount)),
		detail: func(c []string) Example {
			return Example{ID: c[0], PGID: c[1], Table: strings.Trim(n.L, `"`), Mongo: "", Postgres: c[3],
				Detail: fmt.Sprintf("payment refunded %s times (refunds total %s, payment %s): entries %s", c[2], c[3], c[4], c[5])}
		},
	}, {
		check: checkLedgerOverpaid,
		count: fmt.Sprintf(`SELECT count(DISTINCT %s) FROM %s e WHERE %s::text IN ('release', 'refund')`, e(n.lPayment), n.L, e(n.lType)),
		sql: fmt.Sprintf(`SELECT %s, p.id::text, %s::text, %s, sum(%s)::text
			FROM %s p %s JOIN %s e ON %s = p.id AND %s::text IN ('release', 'refund') AND %s = %s
			GROUP BY p.id, pm.legacy_object_id, %s, %s HAVING sum(%s) > %s`,
			pid, p(n.pAmount), p(n.pCurrency), e(n.lAmount), n.P, pmap, n.L, e(n.lPayment), e(n.lType), e(n.lCurrency), p(n.pCurrency),
			p(n.pAmount), p(n.pCurrency), e(n.lAmount), p(n.pAmount)),
		detail: func(c []string) Example {
			return Example{ID: c[0], PGID: c[1], Table: strings.Trim(n.P, `"`), Postgres: c[4],
				Detail: fmt.Sprintf("releases and refunds total %s %s, more than the payment's %s", c[4], c[3], c[2])}
		},
	}, {
		check: checkLedgerEscrowState,
		count: fmt.Sprintf(`SELECT count(DISTINCT %s) FROM %s e WHERE %s IS NOT NULL`, e(n.lPayment), n.L, e(n.lState)),
		sql: fmt.Sprintf(`WITH last AS (
				SELECT DISTINCT ON (%s) %s AS payment_id, %s::text AS st, %s::text AS type, %s AS eid
				FROM %s e %s
				WHERE %s IS NOT NULL AND %s IS NOT NULL
				ORDER BY %s, %s)
			SELECT %s, p.id::text, coalesce(%s::text, 'NULL'), last.st, last.type, last.eid
			FROM last JOIN %s p ON p.id = last.payment_id %s
			WHERE %s::text IS DISTINCT FROM last.st`,
			e(n.lPayment), e(n.lPayment), e(n.lState), e(n.lType), eid, n.L, emap, e(n.lPayment), e(n.lState), e(n.lPayment), order,
			pid, p(n.pState), n.P, pmap, p(n.pState)),
		detail: func(c []string) Example {
			return Example{ID: c[0], PGID: c[1], Table: strings.Trim(n.P, `"`), Column: "escrow_state", Postgres: c[2], Mongo: "",
				Detail: fmt.Sprintf("payment's escrow_state is %s, its last ledger entry (%s, %s) moved it to %s", c[2], c[5], c[4], c[3])}
		},
	}, {
		check: checkLedgerEntryPay,
		count: fmt.Sprintf(`SELECT count(*) FROM %s e`, n.L),
		sql: fmt.Sprintf(`SELECT coalesce(em.legacy_object_id, ''), e.id::text, %s::text, coalesce(%s::text, 'NULL')
			FROM %s e %s
			WHERE (%s IS NOT NULL AND NOT EXISTS (SELECT 1 FROM %s p WHERE p.id = %s))
			   OR (%s IS NULL AND %s::text IN ('hold', 'release', 'refund'))`,
			e(n.lType), e(n.lPayment), n.L, emap, e(n.lPayment), n.P, e(n.lPayment), e(n.lPayment), e(n.lType)),
		detail: func(c []string) Example {
			if c[3] == "NULL" {
				return Example{ID: c[0], PGID: c[1], Table: strings.Trim(n.L, `"`), Detail: fmt.Sprintf("%s entry books no payment", c[2])}
			}
			return Example{ID: c[0], PGID: c[1], Table: strings.Trim(n.L, `"`), Postgres: c[3],
				Detail: fmt.Sprintf("%s entry books payment %s, which has no row", c[2], c[3])}
		},
	}}
}

// runLedgerQuery runs one check's count and query in one timeout, so that
// recheckable can run it again as a whole.
func (v *Verifier) runLedgerQuery(ctx context.Context, ch *Check, q ledgerQuery) error {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.QueryTimeout)
	defer cancel()
	var total int64
	if err := v.pg.pool.QueryRow(ctx, q.count).Scan(&total); err != nil {
		return pgErr(q.check, err)
	}
	ch.Counts["checked"] = total
	rows, err := v.pg.pool.Query(ctx, q.sql)
	if err != nil {
		return pgErr(q.check, err)
	}
	defer rows.Close()
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return pgErr(q.check, err)
		}
		cols := make([]string, len(vals))
		for i, x := range vals {
			cols[i] = fmt.Sprint(x)
			if d, ok := parseDecimal(cols[i]); ok && strings.Contains(cols[i], ".") {
				cols[i] = d.String() // numeric text without trailing zeros
			}
		}
		ch.mismatch(q.detail(cols))
	}
	return pgErr(q.check, rows.Err())
}
