package mongotest

import (
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// request is one command being executed.
type request struct {
	c    *conn
	cmd  string // canonical command name
	db   string
	body bsoncore.Document
	seqs map[string][]bsoncore.Document
	w    *writer
	txn  *txnState
}

// arg returns the value of the command field key.
func (r *request) arg(key string) (bsoncore.Value, bool) {
	v, err := r.body.LookupErr(key)
	return v, err == nil
}

func (r *request) docArg(key string) (bsoncore.Document, error) {
	v, ok := r.arg(key)
	if !ok || v.Type == 0x0A {
		return nil, nil
	}
	d, ok := v.DocumentOK()
	if !ok {
		return nil, newError(codeTypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type 'object'", r.cmd, key, typeName(v.Type))
	}
	return d, nil
}

func (r *request) intArg(key string) (int64, bool) {
	v, ok := r.arg(key)
	if !ok {
		return 0, false
	}
	return v.AsInt64OK()
}

func (r *request) boolArg(key string) bool {
	v, ok := r.arg(key)
	return ok && truthy(v)
}

// collName returns the collection named by the command's first field.
func (r *request) collName() (string, error) {
	e, err := r.body.IndexErr(0)
	if err != nil {
		return "", badValue("empty command")
	}
	name, ok := e.Value().StringValueOK()
	if !ok || name == "" {
		return "", newError(codeInvalidNamespace, "collection name has invalid type %s", e.Value().Type)
	}
	return name, nil
}

// docs returns the documents of a batch field, from an OP_MSG document
// sequence or an inline array.
func (r *request) docs(field string) ([]bsoncore.Document, error) {
	if d, ok := r.seqs[field]; ok {
		return d, nil
	}
	v, ok := r.arg(field)
	if !ok {
		return nil, nil
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return nil, newError(codeTypeMismatch, "BSON field '%s.%s' must be an array", r.cmd, field)
	}
	vals, err := arr.Values()
	if err != nil {
		return nil, badValue("invalid %s: %v", field, err)
	}
	out := make([]bsoncore.Document, 0, len(vals))
	for _, v := range vals {
		d, ok := v.DocumentOK()
		if !ok {
			return nil, newError(codeTypeMismatch, "%s entries must be documents", field)
		}
		out = append(out, d)
	}
	return out, nil
}

type handler func(s *Server, r *request) (bson.D, error)

var handlers map[string]handler

// aliases maps accepted spellings to canonical command names.
var aliases = map[string]string{
	"ismaster": "isMaster", "findandmodify": "findAndModify", "buildinfo": "buildInfo",
	"listcollections": "listCollections", "listdatabases": "listDatabases",
	"killcursors": "killCursors", "endsessions": "endSessions", "getmore": "getMore",
	"committransaction": "commitTransaction", "aborttransaction": "abortTransaction",
	"createindexes": "createIndexes", "listindexes": "listIndexes", "dropindexes": "dropIndexes",
	"dropdatabase": "dropDatabase", "replsetgetstatus": "replSetGetStatus",
	"getparameter": "getParameter", "getcmdlineopts": "getCmdLineOpts", "serverstatus": "serverStatus",
	"whatsmyuri": "whatsmyuri", "connectionstatus": "connectionStatus", "hello": "hello",
	"ping": "ping", "insert": "insert", "update": "update", "delete": "delete", "find": "find",
	"aggregate": "aggregate", "count": "count", "create": "create", "drop": "drop",
	"distinct": "distinct", "refreshsessions": "refreshSessions", "startsession": "startSession",
	"hostinfo": "hostInfo", "dbstats": "dbStats", "collstats": "collStats", "listcommands": "listCommands",
	"deleteindexes": "dropIndexes", "getlasterror": "getLastError", "collmod": "collMod",
	"renamecollection": "renameCollection",
}

func init() {
	handlers = map[string]handler{
		"hello":             (*Server).cmdHello,
		"isMaster":          (*Server).cmdHello,
		"ping":              cmdOK,
		"buildInfo":         (*Server).cmdBuildInfo,
		"getParameter":      (*Server).cmdGetParameter,
		"getCmdLineOpts":    (*Server).cmdGetCmdLineOpts,
		"serverStatus":      (*Server).cmdServerStatus,
		"hostInfo":          (*Server).cmdHostInfo,
		"whatsmyuri":        (*Server).cmdWhatsMyURI,
		"connectionStatus":  (*Server).cmdConnectionStatus,
		"replSetGetStatus":  (*Server).cmdReplSetGetStatus,
		"endSessions":       (*Server).cmdEndSessions,
		"refreshSessions":   cmdOK,
		"startSession":      (*Server).cmdStartSession,
		"killCursors":       (*Server).cmdKillCursors,
		"insert":            (*Server).cmdInsert,
		"update":            (*Server).cmdUpdate,
		"delete":            (*Server).cmdDelete,
		"findAndModify":     (*Server).cmdFindAndModify,
		"find":              (*Server).cmdFind,
		"getMore":           (*Server).cmdGetMore,
		"aggregate":         (*Server).cmdAggregate,
		"count":             (*Server).cmdCount,
		"distinct":          (*Server).cmdDistinct,
		"listCollections":   (*Server).cmdListCollections,
		"listDatabases":     (*Server).cmdListDatabases,
		"create":            (*Server).cmdCreate,
		"drop":              (*Server).cmdDrop,
		"dropDatabase":      (*Server).cmdDropDatabase,
		"createIndexes":     (*Server).cmdCreateIndexes,
		"listIndexes":       (*Server).cmdListIndexes,
		"dropIndexes":       (*Server).cmdDropIndexes,
		"renameCollection":  (*Server).cmdRenameCollection, // rename.go
		"commitTransaction": (*Server).cmdCommitTransaction,
		"abortTransaction":  (*Server).cmdAbortTransaction,
		"collMod":           (*Server).cmdCollMod, // images.go
		"dbStats":           (*Server).cmdDBStats,
		"collStats":         (*Server).cmdCollStats,
	}
}

func cmdOK(*Server, *request) (bson.D, error) { return bson.D{}, nil }

// handle executes one message and returns the encoded reply document.
func (s *Server) handle(c *conn, m *message) (reply []byte) {
	defer func() {
		if p := recover(); p != nil {
			s.logf("conn %d: panic handling %s: %v\n%s", c.id, m.body, p, debug.Stack())
			reply = s.finish(newError(1, "mongotest: internal error: %v", p).reply())
		}
	}()
	first, err := m.body.IndexErr(0)
	if err != nil {
		return s.finish(newError(codeFailedToParse, "empty command").reply())
	}
	name := first.Key()
	cmd, ok := aliases[strings.ToLower(name)]
	if !ok {
		cmd = name
	}
	r := &request{c: c, cmd: cmd, body: m.body, seqs: m.seqs}
	if m.legacy {
		r.db = strings.TrimSuffix(m.fullCollectionName, ".$cmd")
	} else if v, err := m.body.LookupErr("$db"); err == nil {
		r.db, _ = v.StringValueOK()
	}
	if r.db == "" {
		return s.finish(newError(codeInvalidNamespace, "no $db in command %s", name).reply())
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.execute(r)
	if err != nil {
		ce := asCmdError(err)
		if ce.code != codeMaxTimeMSExpired && (cmd != "getMore" || ce.code != codeChangeStreamHistoryLost) {
			s.logf("conn %d: %s on %s failed: %v", c.id, cmd, r.db, ce)
		}
		return s.finish(ce.reply())
	}
	return s.finish(d)
}

// execute runs a command with s.mu held.
func (s *Server) execute(r *request) (bson.D, error) {
	if fp := s.takeFailPoint(r.cmd); fp != nil {
		if fp.closeConn {
			r.c.close()
			return nil, newError(codeHostUnreachable, "mongotest: connection closed by fail point")
		}
		return nil, &cmdError{code: fp.code, msg: fmt.Sprintf("Failing command %s via mongotest fail point", r.cmd), labels: fp.labels}
	}
	h := handlers[r.cmd]
	if h == nil {
		return nil, newError(codeCommandNotFound, "no such command: '%s'", r.cmd)
	}
	f := parseTxnFields(r.body)
	r.w = &writer{s: s}
	// What a mongos or a standalone mongod answers differently (topology.go).
	if d, done, err := s.topologyGate(r, f); done {
		return d, err
	}
	switch {
	case r.cmd == "commitTransaction" || r.cmd == "abortTransaction" || f.hasAutocommit:
		if !txnCommands[r.cmd] {
			return nil, newError(263, "Cannot run '%s' in a multi-document transaction.", r.cmd)
		}
		t, err := s.resolveTxn(r.cmd, f)
		if err != nil {
			if r.cmd == "abortTransaction" {
				if ce, ok := err.(*cmdError); ok && ce.code == codeNoSuchTransaction {
					ce.labels = nil
				}
			}
			return nil, err
		}
		r.txn = t
		if r.cmd != "commitTransaction" && r.cmd != "abortTransaction" {
			r.w.txn = t
		}
		d, err := h(s, r)
		if err != nil && r.cmd != "commitTransaction" && r.cmd != "abortTransaction" {
			// Any error inside a transaction aborts it, as in MongoDB.
			s.abortTxn(t, fmt.Sprintf("%s failed: %v", r.cmd, err))
			if ce, ok := err.(*cmdError); ok && ce.code == codeWriteConflict && len(ce.labels) == 0 {
				ce.labels = []string{"TransientTransactionError"}
			}
		}
		return d, err
	case f.hasTxnNumber && f.lsid != nil && isWriteCommand(r.cmd):
		// A retryable write: executed once per (lsid, txnNumber).
		ss, err := s.getSession(f.lsid)
		if err != nil {
			return nil, err
		}
		if f.txnNumber < ss.txnNumber {
			return nil, newError(codeTransactionTooOld, "Retryable write with txnNumber %d is prohibited on session because a newer retryable write with txnNumber %d has already started on this session.", f.txnNumber, ss.txnNumber)
		}
		if f.txnNumber == ss.retryNum && ss.retryCmd == r.cmd && ss.retryReply != nil {
			return ss.retryReply, nil
		}
		if f.txnNumber > ss.txnNumber {
			s.abortTxn(ss.txn, "a newer retryable write was started")
		}
		ss.txnNumber = f.txnNumber
		d, err := h(s, r)
		if r.w.wrote {
			s.broadcast()
		}
		if err == nil {
			ss.retryNum, ss.retryCmd, ss.retryReply = f.txnNumber, r.cmd, d
		}
		return d, err
	}
	d, err := h(s, r)
	if r.w.wrote {
		s.broadcast()
	}
	return d, err
}

// finish appends ok, $clusterTime and operationTime and encodes the reply.
// Caller holds s.mu (or the server is in a consistent state).
func (s *Server) finish(d bson.D) []byte {
	out := make(bson.D, 0, len(d)+3)
	hasOK := false
	for _, e := range d {
		if e.Key == "ok" {
			hasOK = true
		}
	}
	if !hasOK {
		out = append(out, d...)
		out = append(out, bson.E{Key: "ok", Value: 1.0})
	} else {
		out = append(out, d...)
	}
	ct := s.clock
	out = append(out,
		bson.E{Key: "$clusterTime", Value: bson.D{
			{Key: "clusterTime", Value: ct},
			{Key: "signature", Value: bson.D{
				{Key: "hash", Value: bson.Binary{Subtype: 0, Data: make([]byte, 20)}},
				{Key: "keyId", Value: int64(0)},
			}},
		}},
		bson.E{Key: "operationTime", Value: ct},
	)
	b, err := bson.Marshal(out)
	if err != nil {
		s.logf("encode reply: %v", err)
		b, _ = bson.Marshal(newError(1, "mongotest: cannot encode reply: %v", err).reply())
	}
	return b
}

// ---- diagnostic and administrative commands ----

func (s *Server) cmdHello(r *request) (bson.D, error) {
	if s.opts.Topology == TopologyMongos || s.opts.Topology == TopologyStandalone {
		return s.helloNotReplSet(r), nil // topology.go
	}
	now := time.Now()
	last := s.oplog[len(s.oplog)-1]
	lastDate := bson.DateTime(last.wall)
	opTime := bson.D{{Key: "ts", Value: last.ts}, {Key: "t", Value: int64(1)}}
	return bson.D{
		{Key: "hosts", Value: bson.A{s.addr}},
		{Key: "setName", Value: s.opts.ReplicaSet},
		{Key: "setVersion", Value: int32(1)},
		{Key: "helloOk", Value: true},
		{Key: "ismaster", Value: true},
		{Key: "isWritablePrimary", Value: true},
		{Key: "secondary", Value: false},
		{Key: "primary", Value: s.addr},
		{Key: "me", Value: s.addr},
		{Key: "electionId", Value: s.electionID},
		{Key: "lastWrite", Value: bson.D{
			{Key: "opTime", Value: opTime},
			{Key: "lastWriteDate", Value: lastDate},
			{Key: "majorityOpTime", Value: opTime},
			{Key: "majorityWriteDate", Value: lastDate},
		}},
		{Key: "maxBsonObjectSize", Value: int32(maxBSONSize)},
		{Key: "maxMessageSizeBytes", Value: int32(maxMessageSize)},
		{Key: "maxWriteBatchSize", Value: int32(100000)},
		{Key: "localTime", Value: bson.NewDateTimeFromTime(now)},
		{Key: "logicalSessionTimeoutMinutes", Value: int32(30)},
		{Key: "connectionId", Value: r.c.id},
		{Key: "minWireVersion", Value: int32(0)},
		{Key: "maxWireVersion", Value: int32(17)},
		{Key: "readOnly", Value: false},
	}, nil
}

func (s *Server) cmdBuildInfo(r *request) (bson.D, error) {
	return bson.D{
		{Key: "version", Value: s.opts.Version},
		{Key: "gitVersion", Value: "mongotest"},
		{Key: "modules", Value: bson.A{}},
		{Key: "allocator", Value: "system"},
		{Key: "javascriptEngine", Value: "none"},
		{Key: "sysInfo", Value: "deprecated"},
		{Key: "versionArray", Value: s.versionArray()},
		{Key: "bits", Value: int32(64)},
		{Key: "debug", Value: false},
		{Key: "maxBsonObjectSize", Value: int32(maxBSONSize)},
		{Key: "storageEngines", Value: bson.A{"mongotest"}},
	}, nil
}

func (s *Server) cmdGetParameter(r *request) (bson.D, error) {
	known := map[string]any{
		"featureCompatibilityVersion":            bson.D{{Key: "version", Value: fmt.Sprintf("%d.%d", s.version[0], s.version[1])}},
		"transactionLifetimeLimitSeconds":        int32(60),
		"maxTransactionLockRequestTimeoutMillis": int32(5),
	}
	var out bson.D
	elems, _ := r.body.Elements()
	all := false
	if v, ok := r.arg("getParameter"); ok && v.Type == 0x02 && v.StringValue() == "*" {
		all = true
	}
	for _, e := range elems[1:] {
		if v, ok := known[e.Key()]; ok {
			out = append(out, bson.E{Key: e.Key(), Value: v})
		}
	}
	if all {
		for k, v := range known {
			out = append(out, bson.E{Key: k, Value: v})
		}
	}
	return out, nil
}

func (s *Server) cmdGetCmdLineOpts(r *request) (bson.D, error) {
	return bson.D{
		{Key: "argv", Value: bson.A{"mongod", "--replSet", s.opts.ReplicaSet}},
		{Key: "parsed", Value: bson.D{{Key: "replication", Value: bson.D{{Key: "replSet", Value: s.opts.ReplicaSet}}}}},
	}, nil
}

func (s *Server) cmdServerStatus(r *request) (bson.D, error) {
	return bson.D{
		{Key: "host", Value: s.addr},
		{Key: "version", Value: s.opts.Version},
		{Key: "process", Value: "mongod"},
		{Key: "localTime", Value: bson.NewDateTimeFromTime(time.Now())},
		{Key: "connections", Value: bson.D{{Key: "current", Value: int32(len(s.conns))}}},
		{Key: "repl", Value: bson.D{{Key: "setName", Value: s.opts.ReplicaSet}, {Key: "isWritablePrimary", Value: true}}},
	}, nil
}

func (s *Server) cmdHostInfo(r *request) (bson.D, error) {
	return bson.D{{Key: "system", Value: bson.D{{Key: "hostname", Value: s.addr}}}}, nil
}

func (s *Server) cmdWhatsMyURI(r *request) (bson.D, error) {
	return bson.D{{Key: "you", Value: r.c.nc.RemoteAddr().String()}}, nil
}

func (s *Server) cmdConnectionStatus(r *request) (bson.D, error) {
	return bson.D{{Key: "authInfo", Value: bson.D{
		{Key: "authenticatedUsers", Value: bson.A{}},
		{Key: "authenticatedUserRoles", Value: bson.A{}},
	}}}, nil
}

func (s *Server) cmdReplSetGetStatus(r *request) (bson.D, error) {
	last := s.oplog[len(s.oplog)-1]
	opTime := bson.D{{Key: "ts", Value: last.ts}, {Key: "t", Value: int64(1)}}
	date := bson.DateTime(last.wall)
	return bson.D{
		{Key: "set", Value: s.opts.ReplicaSet},
		{Key: "date", Value: bson.NewDateTimeFromTime(time.Now())},
		{Key: "myState", Value: int32(1)},
		{Key: "term", Value: int64(1)},
		{Key: "heartbeatIntervalMillis", Value: int64(2000)},
		{Key: "optimes", Value: bson.D{
			{Key: "lastCommittedOpTime", Value: opTime},
			{Key: "appliedOpTime", Value: opTime},
			{Key: "durableOpTime", Value: opTime},
		}},
		{Key: "members", Value: bson.A{bson.D{
			{Key: "_id", Value: int32(0)},
			{Key: "name", Value: s.addr},
			{Key: "health", Value: 1.0},
			{Key: "state", Value: int32(1)},
			{Key: "stateStr", Value: "PRIMARY"},
			{Key: "optime", Value: opTime},
			{Key: "optimeDate", Value: date},
			{Key: "electionId", Value: s.electionID},
			{Key: "self", Value: true},
		}}},
	}, nil
}

func (s *Server) cmdStartSession(r *request) (bson.D, error) {
	id := make([]byte, 16)
	oid := bson.NewObjectID()
	copy(id, oid[:])
	return bson.D{{Key: "id", Value: bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: id}}}}, {Key: "timeoutMinutes", Value: int32(30)}}, nil
}

func (s *Server) cmdEndSessions(r *request) (bson.D, error) {
	v, ok := r.arg(r.body.Index(0).Key())
	if !ok {
		return bson.D{}, nil
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return nil, badValue("endSessions needs an array")
	}
	vals, _ := arr.Values()
	for _, x := range vals {
		d, ok := x.DocumentOK()
		if !ok {
			continue
		}
		idv, err := d.LookupErr("id")
		if err != nil {
			continue
		}
		_, idb := idv.Binary()
		if ss := s.sessions[string(idb)]; ss != nil {
			s.abortTxn(ss.txn, "session ended")
			delete(s.sessions, string(idb))
		}
	}
	return bson.D{}, nil
}

func (s *Server) cmdDBStats(r *request) (bson.D, error) {
	var colls, objects int64
	if d := s.dbs[r.db]; d != nil {
		for _, c := range d.colls {
			colls++
			objects += int64(len(c.docs))
		}
	}
	return bson.D{{Key: "db", Value: r.db}, {Key: "collections", Value: colls}, {Key: "objects", Value: objects}}, nil
}

func (s *Server) cmdCollStats(r *request) (bson.D, error) {
	name, err := r.collName()
	if err != nil {
		return nil, err
	}
	var n int64
	if c := s.coll(nsKey{r.db, name}); c != nil {
		n = int64(len(c.docs))
	}
	return bson.D{{Key: "ns", Value: r.db + "." + name}, {Key: "count", Value: n}}, nil
}

// ---- fault injection ----

type failPoint struct {
	cmd       string
	times     int
	code      int32
	labels    []string
	closeConn bool
}

// takeFailPoint consumes one use of a fail point for cmd. Caller holds s.mu.
func (s *Server) takeFailPoint(cmd string) *failPoint {
	for i, fp := range s.fails {
		if fp.cmd != cmd {
			continue
		}
		fp.times--
		if fp.times <= 0 {
			s.fails = append(s.fails[:i:i], s.fails[i+1:]...)
		}
		return fp
	}
	return nil
}

// FailCommand makes the next `times` commands named cmd (e.g. "getMore",
// "aggregate", "insert", "commitTransaction") fail with
// {ok: 0, code, codeName, errmsg, errorLabels: labels} before they execute,
// like MongoDB's failCommand fail point. Later calls queue after earlier
// ones for the same command.
func (s *Server) FailCommand(cmd string, times int, code int32, labels ...string) {
	if times <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = append(s.fails, &failPoint{cmd: canonicalCmd(cmd), times: times, code: code, labels: append([]string(nil), labels...)})
}

// FailCommandCloseConnection makes the next `times` commands named cmd close
// their connection instead of replying (a network error for the driver,
// which then retries or resumes). The command is not executed.
func (s *Server) FailCommandCloseConnection(cmd string, times int) {
	if times <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = append(s.fails, &failPoint{cmd: canonicalCmd(cmd), times: times, closeConn: true})
}

// ClearFailPoints removes every pending fail point.
func (s *Server) ClearFailPoints() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = nil
}

func canonicalCmd(cmd string) string {
	if c, ok := aliases[strings.ToLower(cmd)]; ok {
		return c
	}
	return cmd
}
