package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// ErrInvalidConfig marks a Config that cannot run.
var ErrInvalidConfig = errors.New("invalid verify configuration")

// ErrUnreachable marks a database that could not be reached: the run
// stops, and nothing it did not finish counts as passed.
var ErrUnreachable = errors.New("database unreachable")

// Systems named by UnreachableError.
const (
	SystemMongo    = "mongodb"
	SystemPostgres = "postgresql"
)

// UnreachableError names the database that could not be reached.
type UnreachableError struct {
	System string // SystemMongo or SystemPostgres
	Err    error
}

func (e *UnreachableError) Error() string {
	name := "MongoDB"
	if e.System == SystemPostgres {
		name = "PostgreSQL"
	}
	return fmt.Sprintf("%s unreachable: %v", name, e.Err)
}

// Unwrap returns both ErrUnreachable and the cause.
func (e *UnreachableError) Unwrap() []error { return []error{ErrUnreachable, e.Err} }

// mongoErr classifies an error of a MongoDB operation: a network or
// server-selection failure is an *UnreachableError.
func mongoErr(op string, err error) error {
	if err == nil {
		return nil
	}
	err = fmt.Errorf("%s: %w", op, err)
	var sse topology.ServerSelectionError
	if mongo.IsNetworkError(err) || mongo.IsTimeout(err) || errors.As(err, &sse) || errors.Is(err, context.DeadlineExceeded) {
		return &UnreachableError{System: SystemMongo, Err: err}
	}
	return err
}

// pgErr classifies an error of a PostgreSQL operation: a failure to
// connect or a broken connection is an *UnreachableError; an error the
// server answered with (SQLSTATE) is not.
func pgErr(op string, err error) error {
	if err == nil {
		return nil
	}
	err = fmt.Errorf("%s: %w", op, err)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08 is connection exception; 57P0x is the server going away.
		if len(pe.Code) == 5 && (pe.Code[:2] == "08" || pe.Code[:4] == "57P0") {
			return &UnreachableError{System: SystemPostgres, Err: err}
		}
		return err
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	if errors.As(err, &ne) || errors.As(err, &ce) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) {
		return &UnreachableError{System: SystemPostgres, Err: err}
	}
	return err
}

// IsUnreachable reports whether err says a database could not be reached.
func IsUnreachable(err error) bool { return errors.Is(err, ErrUnreachable) }
