package cli

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/dlq"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/replay"
	"github.com/amanat/cdc/pkg/state"
)

// TestInFlagTerms: the libraries' refusals are printed with the flags
// that fix them, and stay what they were for errors.Is and the exit code.
func TestInFlagTerms(t *testing.T) {
	from, to, now := event.ClusterTime{T: 1700000300, I: 1}, event.ClusterTime{T: 1700000200, I: 4}, event.ClusterTime{T: 1700000100, I: 9}
	other := errors.New("postgres: connection refused")
	cases := []struct {
		name    string
		err     error
		want    string // the whole message
		is      error
		library string // a substring of the library's own message, without flags
	}{
		{"no filter", dlq.ErrNoFilter, "name the dead letters: --id, --collection (optionally with --doc), --txn, or --all", dlq.ErrNoFilter,
			"give ids, a collection"},
		{"no filter, a usage error", &usageError{dlq.ErrNoFilter}, "name the dead letters: --id, --collection (optionally with --doc), --txn, or --all", dlq.ErrNoFilter,
			"give ids, a collection"},
		{"no reason", &usageError{dlq.ErrNoReason}, "--reason is required: say why, it is kept with the entry and in its history", dlq.ErrNoReason,
			"a reason is required"},
		{"range ends in the future", &replay.OplogRangeError{From: now, To: from, Now: now},
			"bad range: --to 1700000300.1 (2023-11-14T22:18:20Z) is in the future (now is 1700000100.9 (2023-11-14T22:15:00Z))", replay.ErrBadRange,
			"the end 1700000300.1"},
		{"range starts after its end", &replay.OplogRangeError{From: from, To: to},
			"bad range: --from 1700000300.1 (2023-11-14T22:18:20Z) is after --to 1700000200.4 (2023-11-14T22:16:40Z)", replay.ErrBadRange,
			"the start 1700000300.1 (2023-11-14T22:18:20Z) is after the end"},
		{"transaction not whole", &dlq.IncompleteError{Gaps: []state.TxnGap{{TxnID: "l:1", Last: 2, Missing: []int{1}}}},
			"", dlq.ErrIncomplete, "not whole among the open dead letters"},
		{"anything else as it is", other, "postgres: connection refused", other, "connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(tc.err.Error(), tc.library) || strings.Contains(tc.err.Error(), "--") {
				t.Fatalf("library message %q: want %q in it and no flag", tc.err.Error(), tc.library)
			}
			got := inFlagTerms(tc.err)
			if tc.want != "" && got.Error() != tc.want {
				t.Fatalf("printed %q, want %q", got.Error(), tc.want)
			}
			if !errors.Is(got, tc.is) {
				t.Fatalf("restated %v is no longer %v", got, tc.is)
			}
			var ue *usageError
			if errors.As(tc.err, &ue) != errors.As(got, &ue) {
				t.Fatal("restating changed whether the error is a usage error (the exit code)")
			}
		})
	}
	msg := inFlagTerms(&dlq.IncompleteError{Gaps: []state.TxnGap{{TxnID: "l:1", Last: 2, Missing: []int{1}}}}).Error()
	if !strings.Contains(msg, "transaction l:1") || !strings.HasSuffix(msg, "\n"+incompleteRecovery) {
		t.Fatalf("incomplete transaction printed as %q, want the gaps and then the recovery", msg)
	}
}

// TestMainPrintsFlags: the whole path, from a command to stderr and the
// exit code, without any system to reach.
func TestMainPrintsFlags(t *testing.T) {
	var stderr bytes.Buffer
	code := Main([]string{"dlq", "drop", "--reason", "x"}, io.Discard, &stderr)
	if code != ExitUsage {
		t.Fatalf("exit code %d, want %d (usage); stderr %q", code, ExitUsage, stderr.String())
	}
	if want := "cdc: name the dead letters: --id, --collection (optionally with --doc), --txn, or --all\n"; stderr.String() != want {
		t.Fatalf("stderr %q, want %q", stderr.String(), want)
	}
}
