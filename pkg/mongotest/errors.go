package mongotest

import (
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Error codes used by the server (MongoDB's numbering).
const (
	codeBadValue                int32 = 2
	codeHostUnreachable         int32 = 6
	codeFailedToParse           int32 = 9
	codeTypeMismatch            int32 = 14
	codeInvalidNamespace        int32 = 73
	codeNamespaceNotFound       int32 = 26
	codeCursorNotFound          int32 = 43
	codeNamespaceExists         int32 = 48
	codeMaxTimeMSExpired        int32 = 50
	codeCommandNotFound         int32 = 59
	codeImmutableField          int32 = 66
	codeWriteConflict           int32 = 112
	codeConflictingUpdate       int32 = 40
	codeTransactionTooOld       int32 = 225
	codeNoSuchTransaction       int32 = 251
	codeTransactionCommitted    int32 = 256
	codeInvalidResumeToken      int32 = 260
	codeChangeStreamFatal       int32 = 280
	codeChangeStreamHistoryLost int32 = 286
	codeDuplicateKey            int32 = 11000
)

var codeNames = map[int32]string{
	1:     "InternalError",
	2:     "BadValue",
	6:     "HostUnreachable",
	7:     "HostNotFound",
	9:     "FailedToParse",
	11:    "UserNotFound",
	13:    "Unauthorized",
	14:    "TypeMismatch",
	18:    "AuthenticationFailed",
	20:    "IllegalOperation",
	26:    "NamespaceNotFound",
	40:    "ConflictingUpdateOperators",
	43:    "CursorNotFound",
	48:    "NamespaceExists",
	50:    "MaxTimeMSExpired",
	59:    "CommandNotFound",
	66:    "ImmutableField",
	72:    "InvalidOptions",
	73:    "InvalidNamespace",
	89:    "NetworkTimeout",
	91:    "ShutdownInProgress",
	112:   "WriteConflict",
	136:   "CappedPositionLost",
	189:   "PrimarySteppedDown",
	225:   "TransactionTooOld",
	251:   "NoSuchTransaction",
	256:   "TransactionCommitted",
	260:   "InvalidResumeToken",
	262:   "ExceededTimeLimit",
	280:   "ChangeStreamFatalError",
	286:   "ChangeStreamHistoryLost",
	9001:  "SocketException",
	10107: "NotWritablePrimary",
	11000: "DuplicateKey",
	11600: "InterruptedAtShutdown",
	11602: "InterruptedDueToReplStateChange",
	13435: "NotPrimaryNoSecondaryOk",
	13436: "NotPrimaryOrSecondary",
}

// CodeName returns MongoDB's name for an error code ("" if unknown to this
// package).
func CodeName(code int32) string { return codeNames[code] }

// cmdError is a command-level failure: it becomes {ok: 0, errmsg, code,
// codeName, errorLabels}.
type cmdError struct {
	code   int32
	msg    string
	labels []string
}

func (e *cmdError) Error() string { return fmt.Sprintf("(%s) %s", codeNames[e.code], e.msg) }

func newError(code int32, format string, args ...any) *cmdError {
	return &cmdError{code: code, msg: fmt.Sprintf(format, args...)}
}

func (e *cmdError) reply() bson.D {
	d := bson.D{
		{Key: "ok", Value: 0.0},
		{Key: "errmsg", Value: e.msg},
		{Key: "code", Value: e.code},
		{Key: "codeName", Value: codeNames[e.code]},
	}
	if len(e.labels) > 0 {
		d = append(d, bson.E{Key: "errorLabels", Value: e.labels})
	}
	return d
}

// writeError is a per-document failure inside a write command, reported in
// writeErrors with ok: 1.
type writeError struct {
	code int32
	msg  string
}

func (e *writeError) Error() string { return e.msg }

func asCmdError(err error) *cmdError {
	switch e := err.(type) {
	case *cmdError:
		return e
	case *writeError:
		return &cmdError{code: e.code, msg: e.msg}
	}
	return &cmdError{code: 1, msg: err.Error()}
}
