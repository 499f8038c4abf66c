package mongotest

import (
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Options.Topology values. The emulator is always one process; Topology
// changes what it says it is and what it therefore refuses.
const (
	// TopologyReplSet (or "") is the primary of a one-member replica set,
	// the default.
	TopologyReplSet = "replset"
	// TopologyMongos is the router of a sharded cluster. hello answers as
	// mongos does (msg "isdbgrid", no setName, hosts, primary, me,
	// electionId or lastWrite: src/mongo/s/commands/cluster_hello_cmd.cpp
	// and MongosHelloResponse::appendToBuilder), so the Go driver
	// classifies it as Mongos (mongo/description/server.go, NewServer:
	// msg == "isdbgrid") and the topology as Sharded. The local database is
	// refused ("Can't use 'local' database through mongos",
	// IllegalOperation 20: src/mongo/s/commands/strategy.cpp,
	// execCommandClient) and replSetGetStatus does not exist
	// (CommandNotFound 59). Everything else, change streams and
	// transactions included, behaves as on the replica set: the emulator is
	// then a cluster with one shard. It does not emulate several shards, so
	// it never produces what only several shards produce (events of
	// different shards sharing a clusterTime).
	TopologyMongos = "mongos"
	// TopologyStandalone is a mongod started without --replSet. hello has no
	// setName or hosts (src/mongo/db/repl/replication_info.cpp,
	// appendReplicationInfo: a non-replica-set node reports only
	// ismaster/isWritablePrimary), so the driver classifies it as
	// Standalone and the topology as Single. $changeStream fails with 40573
	// "The $changeStream stage is only supported on replica sets"
	// (DocumentSourceChangeStream::assertIsLegalSpecification in
	// src/mongo/db/pipeline/document_source_change_stream.cpp); any command
	// carrying txnNumber (transactions; the driver sends no retryable-write
	// txnNumber to a standalone) fails with IllegalOperation (20)
	// "Transaction numbers are only allowed on a replica set member or
	// mongos" (src/mongo/db/initialize_operation_session_info.cpp);
	// replSetGetStatus fails with NoReplicationEnabled (76); there is no
	// oplog, so find on local.oplog.rs returns nothing (the emulator keeps
	// its internal oplog, which no client can see).
	TopologyStandalone = "standalone"
)

const (
	codeIllegalOperation     int32 = 20
	codeNoReplicationEnabled int32 = 76
	codeChangeStreamNotRS    int32 = 40573
)

func init() {
	codeNames[codeNoReplicationEnabled] = "NoReplicationEnabled"
	codeNames[codeChangeStreamNotRS] = "Location40573"
}

// validateTopology checks Options.Topology.
func validateTopology(t string) error {
	switch t {
	case "", TopologyReplSet, TopologyMongos, TopologyStandalone:
		return nil
	}
	return fmt.Errorf("mongotest: Options.Topology %q: want %q, %q or %q", t, TopologyReplSet, TopologyMongos, TopologyStandalone)
}

// isReplSet reports whether the server presents itself as a replica-set
// member.
func (s *Server) isReplSet() bool {
	return s.opts.Topology == "" || s.opts.Topology == TopologyReplSet
}

// helloNotReplSet is hello/isMaster of a mongos or a standalone mongod: the
// fields every hello carries, plus msg "isdbgrid" on mongos and readOnly on
// mongod. As on the replica set, topologyVersion is left out so that the
// driver polls instead of using streaming hello (see doc.go).
func (s *Server) helloNotReplSet(r *request) bson.D {
	primaryField := "isWritablePrimary"
	if r.cmd == "isMaster" {
		primaryField = "ismaster" // the legacy field name of isMaster
	}
	d := bson.D{{Key: primaryField, Value: true}}
	if s.opts.Topology == TopologyMongos {
		d = append(d, bson.E{Key: "msg", Value: "isdbgrid"})
	}
	d = append(d,
		bson.E{Key: "helloOk", Value: true},
		bson.E{Key: "maxBsonObjectSize", Value: int32(maxBSONSize)},
		bson.E{Key: "maxMessageSizeBytes", Value: int32(maxMessageSize)},
		bson.E{Key: "maxWriteBatchSize", Value: int32(100000)},
		bson.E{Key: "localTime", Value: bson.NewDateTimeFromTime(time.Now())},
		bson.E{Key: "logicalSessionTimeoutMinutes", Value: int32(30)},
		bson.E{Key: "connectionId", Value: r.c.id},
		bson.E{Key: "minWireVersion", Value: int32(0)},
		bson.E{Key: "maxWireVersion", Value: int32(17)},
	)
	if s.opts.Topology == TopologyStandalone {
		d = append(d, bson.E{Key: "readOnly", Value: false})
	}
	return d
}

// topologyGate answers the commands that a mongos or a standalone answers
// differently from a replica-set primary, before they run. done reports
// that (d, err) is the reply. Caller holds s.mu.
func (s *Server) topologyGate(r *request, f txnFields) (d bson.D, done bool, err error) {
	switch s.opts.Topology {
	case TopologyStandalone:
		switch {
		case f.hasTxnNumber:
			return nil, true, newError(codeIllegalOperation, "Transaction numbers are only allowed on a replica set member or mongos")
		case r.cmd == "replSetGetStatus":
			return nil, true, newError(codeNoReplicationEnabled, "not running with --replSet")
		case r.cmd == "find" && r.db == "local":
			if name, _ := r.collName(); name == "oplog.rs" {
				return s.cursorReply("local.oplog.rs", nil, 1, false), true, nil
			}
		}
	case TopologyMongos:
		switch {
		case r.db == "local":
			return nil, true, newError(codeIllegalOperation, "Can't use 'local' database through mongos")
		case r.cmd == "replSetGetStatus":
			return nil, true, newError(codeCommandNotFound, "no such cmd: replSetGetStatus")
		}
	}
	return nil, false, nil
}

// changeStreamsSupported refuses $changeStream on a standalone.
func (s *Server) changeStreamsSupported() error {
	if s.opts.Topology == TopologyStandalone {
		return newError(codeChangeStreamNotRS, "The $changeStream stage is only supported on replica sets")
	}
	return nil
}
