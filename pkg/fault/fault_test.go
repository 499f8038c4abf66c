package fault_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/amanat/cdc/pkg/fault"
)

// fatalByType states its class by its type, as tailer.StreamError does.
type fatalByType struct{ cause error }

func (e *fatalByType) Error() string           { return "stream error: " + e.cause.Error() }
func (e *fatalByType) Unwrap() error           { return e.cause }
func (e *fatalByType) FaultClass() fault.Class { return fault.Fatal }

// plain is an error type without a class.
type plain struct{}

func (plain) Error() string { return "plain" }

func TestClassOf(t *testing.T) {
	sentinel := errors.New("connection reset")
	cases := []struct {
		name   string
		err    error
		want   fault.Class
		wantOK bool
	}{
		{"nil", nil, fault.Retryable, false},
		{"unmarked", sentinel, fault.Retryable, false},
		{"unmarked type", plain{}, fault.Retryable, false},
		{"unmarked, wrapped", fmt.Errorf("apply: %w", context.DeadlineExceeded), fault.Retryable, false},
		{"fatal", fault.Fatal.Wrap(sentinel), fault.Fatal, true},
		{"poison", fault.Poison.Wrap(sentinel), fault.Poison, true},
		{"retryable", fault.Retryable.Wrap(sentinel), fault.Retryable, true},
		{"errorf", fault.Poison.Errorf("row %d: %w", 7, sentinel), fault.Poison, true},
		{"marked deep in a chain", fmt.Errorf("sink: %w", fmt.Errorf("batch: %w", fault.Fatal.Wrap(sentinel))), fault.Fatal, true},
		{"outermost mark wins", fault.Retryable.Wrap(fmt.Errorf("retry it: %w", fault.Fatal.Wrap(sentinel))), fault.Retryable, true},
		{"fatal over poison", fault.Fatal.Wrap(fault.Poison.Wrap(sentinel)), fault.Fatal, true},
		{"classed type", &fatalByType{cause: sentinel}, fault.Fatal, true},
		{"classed type wrapped", fmt.Errorf("tailer: %w", &fatalByType{cause: io.EOF}), fault.Fatal, true},
		{"mark over a classed type", fault.Poison.Wrap(&fatalByType{cause: io.EOF}), fault.Poison, true},
		{"joined: the first classed branch", errors.Join(sentinel, fault.Poison.Wrap(io.EOF), fault.Fatal.Wrap(io.EOF)), fault.Poison, true},
		{"multi %w", fmt.Errorf("%w and %w", plain{}, fault.Fatal.Wrap(io.EOF)), fault.Fatal, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := fault.ClassOf(tc.err)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("ClassOf(%v) = %s, %v; want %s, %v", tc.err, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// TestMarkKeepsTheChain: a mark changes neither the message nor what
// errors.Is and errors.As find.
func TestMarkKeepsTheChain(t *testing.T) {
	cause := &plain{}
	err := fmt.Errorf("sink: %w", fault.Fatal.Wrap(fmt.Errorf("table t: %w", cause)))
	if got, want := err.Error(), "sink: table t: plain"; got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
	var p *plain
	if !errors.As(err, &p) || p != cause {
		t.Fatalf("errors.As does not find the cause through the mark")
	}
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Class != fault.Fatal {
		t.Fatalf("errors.As(*fault.Error) = %v, want the fatal mark", fe)
	}
	if !errors.Is(fault.Poison.Wrap(io.EOF), io.EOF) {
		t.Fatal("errors.Is does not see through the mark")
	}
}

func TestWrapNil(t *testing.T) {
	for _, c := range []fault.Class{fault.Retryable, fault.Poison, fault.Fatal} {
		if err := c.Wrap(nil); err != nil {
			t.Fatalf("%s.Wrap(nil) = %#v, want nil", c, err)
		}
	}
}

func TestClassString(t *testing.T) {
	for c, want := range map[fault.Class]string{fault.Retryable: "retryable", fault.Poison: "poison", fault.Fatal: "fatal", fault.Class(9): "Class(9)"} {
		if got := c.String(); got != want {
			t.Errorf("Class(%d).String() = %q, want %q", int(c), got, want)
		}
	}
}
