package mongotest

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The renameCollection admin command, its oplog entry and its change event.
//
// What mongod does, and this file follows:
//
//   - The command runs on admin only ({renameCollection: "db.a", to:
//     "db.b", dropTarget: bool}); elsewhere it fails with Unauthorized (13)
//     "renameCollection may only be run against the admin database."
//     (src/mongo/db/commands.cpp, checkAuthorizationImplPreParse: adminOnly
//     commands). Renaming a collection onto itself is IllegalOperation (20)
//     (src/mongo/db/commands/rename_collection_cmd.cpp).
//   - A missing source is NamespaceNotFound (26) "Source collection db.a does
//     not exist"; an existing target without dropTarget is NamespaceExists
//     (48) "target namespace exists" (src/mongo/db/catalog/rename_collection.cpp,
//     checkSourceAndTargetNamespaces).
//   - A same-database rename writes exactly one oplog entry, with the target's
//     drop folded into it: {op: "c", ns: "db.$cmd", ui: <source UUID>, o:
//     {renameCollection: "db.a", to: "db.b", stayTemp: false[, dropTarget:
//     <target UUID>]}[, o2: {numRecords: <target count>}]}
//     (rename_collection.cpp renameCollectionDirectly /
//     renameCollectionAndDropTarget: "No logOp necessary because the entire
//     renameCollection command is one logOp"; the entry is built by
//     OpObserverImpl::preRenameCollection / onRenameCollection in
//     src/mongo/db/op_observer/op_observer_impl.cpp, o2 by
//     makeObject2ForDropOrRename). So a dropTarget rename produces no separate
//     drop event for the target on any stream.
//   - The change event is {operationType: "rename", ns: <source>, to:
//     <target>} (src/mongo/db/pipeline/change_stream_event_transform.cpp:
//     "The 'to' field contains the target namespace for the rename";
//     https://www.mongodb.com/docs/manual/reference/change-events/rename/).
//     A stream sees it when the source or the target is one of its
//     namespaces (change_stream_filter_helpers.cpp, buildOperationFilter:
//     renameFromEvent / renameToEvent). A collection stream on either the
//     source or the target is invalidated by it; database and cluster
//     streams are not (buildInvalidationFilter and
//     document_source_change_stream_check_invalidate.cpp,
//     isInvalidatingCommand).
//
// Not emulated, refused with an error: renames across databases (mongod
// copies the documents into a temporary collection and writes further
// oplog entries) and renames in the internal admin, config and local
// databases.

// opRename is the oplog kind of a renameCollection command entry. It is kept
// outside the opKind block in oplog.go so that the two can evolve apart.
const opRename opKind = 100

// codeCommandNotSupported is MongoDB's CommandNotSupported (115), used here
// for renames the emulator does not implement.
const codeCommandNotSupported int32 = 115

func init() {
	opTypeNames[opRename] = "rename"
	codeNames[codeCommandNotSupported] = "CommandNotSupported"
	codeNames[40414] = "Location40414"
}

// renameInfo is the part of an opRename entry beyond the source namespace
// (oplogEntry.db/coll/uuid hold the source).
type renameInfo struct {
	toColl     string // target collection, in the source's database
	dropTarget []byte // UUID of the target dropped by the rename, or nil
	numRecords int64  // documents of the dropped target (o2.numRecords)
}

// splitNS splits "db.coll" at the first dot, as MongoDB namespaces are split.
func splitNS(ns string) (nsKey, bool) {
	db, coll, ok := strings.Cut(ns, ".")
	if !ok || db == "" || coll == "" {
		return nsKey{}, false
	}
	return nsKey{db, coll}, true
}

// renameArgs is a renameCollection command once its fields are checked.
type renameArgs struct {
	from, to   nsKey
	dropTarget bool
	// wantTargetUUID is the UUID a dropTarget given as a UUID requires the
	// target to have, nil for a boolean dropTarget.
	wantTargetUUID []byte
}

// cmdRenameCollection implements the renameCollection admin command.
// Caller holds s.mu.
func (s *Server) cmdRenameCollection(r *request) (bson.D, error) {
	a, err := parseRenameArgs(r)
	if err != nil {
		return nil, err
	}
	src := s.coll(a.from)
	if src == nil {
		return nil, newError(codeNamespaceNotFound, "Source collection %s does not exist", a.from)
	}
	target := s.coll(a.to)
	if target != nil && !a.dropTarget {
		return nil, newError(codeNamespaceExists, "target namespace exists")
	}
	if a.wantTargetUUID != nil && (target == nil || string(target.uuid) != string(a.wantTargetUUID)) {
		// CollectionUUIDMismatch (361) with extra info in mongod; the
		// emulator does not produce that reply shape.
		return nil, newError(codeCommandNotSupported, "mongotest: renameCollection with a dropTarget UUID that does not match the target is not emulated")
	}
	s.renameColl(a.from, a.to, src, target)
	r.w.wrote = true
	return bson.D{}, nil
}

// parseRenameArgs makes the checks that need only the command itself. The
// checks against the catalog (source exists, target free) come after them,
// in cmdRenameCollection, so a command that is wrong in both ways reports
// its argument error.
func parseRenameArgs(r *request) (renameArgs, error) {
	if r.db != "admin" {
		return renameArgs{}, newError(13, "renameCollection may only be run against the admin database.")
	}
	fromV := r.body.Index(0).Value()
	fromS, ok := fromV.StringValueOK()
	if !ok {
		return renameArgs{}, badValue("collection name has invalid type %s", typeName(fromV.Type))
	}
	from, ok := splitNS(fromS)
	if !ok {
		return renameArgs{}, newError(codeInvalidNamespace, "Invalid source namespace: %s", fromS)
	}
	toV, ok := r.arg("to")
	if !ok {
		// IDL parsers report a missing required field as 40414.
		return renameArgs{}, newError(40414, "BSON field 'renameCollection.to' is missing but a required field")
	}
	toS, ok := toV.StringValueOK()
	if !ok {
		return renameArgs{}, newError(codeTypeMismatch, "BSON field 'renameCollection.to' is the wrong type '%s', expected type 'string'", typeName(toV.Type))
	}
	to, ok := splitNS(toS)
	if !ok {
		return renameArgs{}, newError(codeInvalidNamespace, "Invalid target namespace: %s", toS)
	}
	for _, ns := range []nsKey{from, to} {
		if err := checkWritable(ns); err != nil {
			return renameArgs{}, err
		}
	}
	if from == to {
		return renameArgs{}, newError(20, "Can't rename a collection to itself")
	}
	if from.db != to.db {
		return renameArgs{}, newError(codeCommandNotSupported, "mongotest: renameCollection across databases (%s to %s) is not emulated", from, to)
	}
	switch from.db {
	case "admin", "config", "local":
		return renameArgs{}, newError(codeCommandNotSupported, "mongotest: renameCollection in the internal %s database is not emulated", from.db)
	}
	a := renameArgs{from: from, to: to}
	// dropTarget is a bool or, in MongoDB 6.0+, the UUID the target must
	// have (rename_collection_cmd.cpp: the visitor over getDropTarget()).
	if v, ok := r.arg("dropTarget"); ok {
		if v.Type == bsoncore.TypeBinary {
			_, b := v.Binary()
			a.dropTarget, a.wantTargetUUID = true, b
		} else {
			a.dropTarget = truthy(v)
		}
	}
	return a, nil
}

// renameColl moves src to its new name, dropping target (nil: none) into
// the same single oplog entry, as a same-database rename does in mongod.
// Caller holds s.mu.
func (s *Server) renameColl(from, to nsKey, src, target *collection) {
	s.abortTxnsTouching(from, "collection renamed")
	s.abortTxnsTouching(to, "collection renamed")
	info := &renameInfo{toColl: to.coll}
	d := s.dbs[from.db]
	if target != nil {
		info.dropTarget = target.uuid
		info.numRecords = int64(len(target.docs))
		delete(d.colls, to.coll)
	}
	delete(d.colls, from.coll)
	src.name = to.coll
	d.colls[to.coll] = src
	s.appendEntry(&oplogEntry{kind: opRename, db: from.db, coll: from.coll, uuid: src.uuid, rename: info}, s.nextTs())
}

// abortTxnsTouching aborts every transaction that wrote to ns or holds a
// document lock in it, as dropColl does for a drop. mongod would make the
// DDL operation wait for the transaction's locks instead (until the
// transaction ends or transactionLifetimeLimitSeconds aborts it); the
// emulator, which serves one command at a time, takes that outcome at once.
// Caller holds s.mu.
func (s *Server) abortTxnsTouching(ns nsKey, reason string) {
	s.abortTxnsOn(func(x nsKey) bool { return x == ns }, reason)
	prefix := ns.db + "." + ns.coll + "\x00"
	for k, l := range s.locks {
		if strings.HasPrefix(k, prefix) {
			s.abortTxn(l, reason)
		}
	}
}

// renameTouches reports whether the rename entry e has from or to in the
// namespace set described by match (a predicate on a namespace).
func renameTouches(e *oplogEntry, match func(nsKey) bool) bool {
	return match(nsKey{e.db, e.coll}) || match(nsKey{e.db, e.rename.toColl})
}

// renameOplogFields returns the o and o2 documents of a rename entry (o2 nil
// without dropTarget).
func renameOplogFields(e *oplogEntry) (o, o2 bsoncore.Document) {
	b := bsoncore.NewDocumentBuilder().
		AppendString("renameCollection", e.db+"."+e.coll).
		AppendString("to", e.db+"."+e.rename.toColl).
		AppendBoolean("stayTemp", false)
	if e.rename.dropTarget != nil {
		b.AppendBinary("dropTarget", 4, e.rename.dropTarget)
		// makeObject2ForDropOrRename appends numRecords as a long long.
		o2 = bsoncore.NewDocumentBuilder().AppendInt64("numRecords", e.rename.numRecords).Build()
	}
	return b.Build(), o2
}

// renameTargetNS returns the "to" field of a rename event: {db, coll} of
// the target.
func renameTargetNS(e *oplogEntry) bsoncore.Document {
	return bsoncore.NewDocumentBuilder().
		AppendString("db", e.db).
		AppendString("coll", e.rename.toColl).
		Build()
}
