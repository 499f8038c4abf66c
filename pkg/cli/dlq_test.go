package cli

import (
	"testing"

	"github.com/amanat/cdc/pkg/dlq"
)

// TestDeadLetterStreamCell: an entry is shown as the message it was,
// STREAM:SEQ; one recorded before streams were (stream NULL) belongs to
// the default stream; one without a sequence names none.
func TestDeadLetterStreamCell(t *testing.T) {
	for _, tc := range []struct {
		name   string
		e      dlq.Entry
		stream string
		cell   string
	}{
		{"a lane's stream", dlq.Entry{Stream: "CDC_users", StreamSeq: 7}, "CDC_users", "CDC_users:7"},
		{"recorded before streams were", dlq.Entry{StreamSeq: 7}, "CDC", "CDC:7"},
		{"no sequence", dlq.Entry{}, "", "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.e
			nameStream(&e, "CDC")
			if e.Stream != tc.stream || seqCell(e) != tc.cell {
				t.Fatalf("stream %q cell %q, want %q %q", e.Stream, seqCell(e), tc.stream, tc.cell)
			}
		})
	}
}
