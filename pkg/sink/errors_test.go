package sink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/fault"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

// TestClassifySQLState pins the SQLSTATE table: the row's own errors are
// poison, the deployment's fatal, the server's trouble (and anything
// unknown) retryable.
func TestClassifySQLState(t *testing.T) {
	cases := []struct {
		code string
		want fault.Class
		what string
	}{
		{"23505", fault.Poison, "unique violation"},
		{"23503", fault.Poison, "foreign key violation"},
		{"23514", fault.Poison, "check violation"},
		{"22003", fault.Poison, "numeric out of range"},
		{"22021", fault.Poison, "bad UTF-8"},
		{"54000", fault.Poison, "index row too large: the row, not the server"},
		{"54001", fault.Poison, "statement too complex (a huge array of the row)"},
		{"P0001", fault.Poison, "raise_exception in a trigger (ledger immutability)"},
		{"44000", fault.Poison, "WITH CHECK OPTION"},
		{"27000", fault.Poison, "triggered data change violation"},
		{"2F005", fault.Poison, "trigger function ended without RETURN"},
		{"38000", fault.Poison, "external routine exception"},
		{"39000", fault.Poison, "external routine invocation exception"},
		{"42703", fault.Fatal, "undefined column"},
		{"42P01", fault.Fatal, "undefined table"},
		{"42501", fault.Fatal, "insufficient privilege"},
		{"28P01", fault.Fatal, "invalid password"},
		{"3D000", fault.Fatal, "database does not exist"},
		{"3F000", fault.Fatal, "schema does not exist"},
		{"0A000", fault.Fatal, "feature not supported"},
		{"40001", fault.Retryable, "serialization failure"},
		{"40P01", fault.Retryable, "deadlock"},
		{"55P03", fault.Retryable, "lock not available"},
		{"57P01", fault.Retryable, "admin shutdown"},
		{"08006", fault.Retryable, "connection failure"},
		{"53300", fault.Retryable, "too many connections"},
		{"58030", fault.Retryable, "I/O error"},
		{"XX000", fault.Retryable, "internal error"},
		{"ZZ999", fault.Retryable, "unknown class: retries, turns unready later"},
		{"2", fault.Retryable, "too short to have a class"},
		{"", fault.Retryable, "no code"},
	}
	for _, tc := range cases {
		if got := classifySQLState(tc.code); got != tc.want {
			t.Errorf("classifySQLState(%q) (%s) = %s, want %s", tc.code, tc.what, got, tc.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

// TestClassify: Classify decides by type through wrap chains; a class the
// error states (fault) wins over what its cause would say; messages never
// count.
func TestClassify(t *testing.T) {
	pgErr := func(code string) error { return &pgconn.PgError{Code: code, Message: "x"} }
	cases := []struct {
		name string
		err  error
		want fault.Class
	}{
		{"nil", nil, fault.Retryable},
		{"poison SQLSTATE, wrapped", fmt.Errorf("apply rows: %w", pgErr("23505")), fault.Poison},
		{"fatal SQLSTATE, wrapped twice", fmt.Errorf("batch: %w", fmt.Errorf("apply rows: %w", pgErr("42703"))), fault.Fatal},
		{"retryable SQLSTATE", pgErr("40001"), fault.Retryable},
		{"fatal mark", fault.Fatal.Errorf("table %s has no columns (does it exist?)", "t"), fault.Fatal},
		{"fatal mark, wrapped", fmt.Errorf("prepare: %w", fault.Fatal.Wrap(errors.New("x"))), fault.Fatal},
		{"a mark wins over the SQLSTATE", fault.Retryable.Wrap(pgErr("23505")), fault.Retryable},
		{"a fatal mark over a poison SQLSTATE", fault.Fatal.Errorf("sink: %w", pgErr("23505")), fault.Fatal},
		{"rejection", &transform.Rejection{Reason: "x"}, fault.Poison},
		{"rejection, wrapped", fmt.Errorf("row: %w", &transform.Rejection{Reason: "x"}), fault.Poison},
		{"schema mismatch", fmt.Errorf("check: %w", transform.ErrSchemaMismatch), fault.Fatal},
		{"stream gap", gapError("CDC", state.Position{Seq: 10}, 20), fault.Fatal},
		{"stream gap sentinel, wrapped", fmt.Errorf("open: %w", ErrStreamGap), fault.Fatal},
		{"stream changed", &StreamChangedError{}, fault.Fatal},
		{"lane layout", fmt.Errorf("lanes: %w", bus.ErrLaneLayout), fault.Fatal},
		{"divergence", fmt.Errorf("append-only insert: %w", &divergenceError{violationError{msg: "x"}}), fault.Poison},
		{"violation decided from the event: never an apply error", &violationError{msg: "append-only violation: x"}, fault.Retryable},
		{"deadline", fmt.Errorf("apply: %w", context.DeadlineExceeded), fault.Retryable},
		{"net error", &net.OpError{Op: "read", Err: timeoutErr{}}, fault.Retryable},
		{"unknown", errors.New("connection reset by peer"), fault.Retryable},
		{"text that reads fatal decides nothing", errors.New("ERROR: column \"x\" does not exist (SQLSTATE 42703)"), fault.Retryable},
		{"text that reads poison decides nothing", errors.New("transform rejection: duplicate key (SQLSTATE 23505)"), fault.Retryable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Fatalf("Classify(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}

// TestGapErrorKeepsItsSentinel: the fatal mark leaves errors.Is intact.
func TestGapErrorKeepsItsSentinel(t *testing.T) {
	err := gapError("CDC", state.Position{Seq: 10}, 20)
	if !errors.Is(err, ErrStreamGap) {
		t.Fatalf("gapError = %v, want errors.Is(ErrStreamGap)", err)
	}
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Class != fault.Fatal {
		t.Fatalf("gapError = %#v, want a fatal *fault.Error", err)
	}
}
