package mongotest

import (
	"bufio"
	"errors"
	"fmt"
	"go.mongodb.org/mongo-driver/v2/bson"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Options configures a Server.
type Options struct {
	// ReplicaSet is the replica set name reported by hello and used in URI.
	// Default "rs0".
	ReplicaSet string
	// Addr is the TCP address to listen on. Default "127.0.0.1:0" (a free
	// port on the loopback interface).
	Addr string
	// Logf, when set, receives diagnostic messages (connections, protocol
	// errors, failed commands). testing.T.Logf fits.
	Logf func(format string, args ...any)
	// MaxOplogEntries caps the oplog like a capped collection: when more
	// entries exist the oldest are dropped (change streams that need them
	// get ChangeStreamHistoryLost). 0 means unlimited.
	MaxOplogEntries int
	// MaxOplogBytes caps the oplog by (approximate) memory: entries hold
	// the document images written. Default 1 GiB, about the minimum size
	// of a real oplog; negative means unlimited. Like MaxOplogEntries, the
	// oldest entries are dropped first and the newest is always kept.
	MaxOplogBytes int64
	// DefaultAwaitTime is how long a change stream getMore without maxTimeMS
	// waits for new events. Default 1s, like MongoDB.
	DefaultAwaitTime time.Duration
	// Topology is what hello describes: "" or "replset" (a replica-set
	// primary, the default), "mongos" (a sharded cluster's router: hello
	// answers msg "isdbgrid" and no setName) or "standalone" (no setName;
	// change streams and transactions are refused as mongod refuses them).
	Topology string
	// Version is the server version buildInfo reports ("7.0.0" by
	// default); features that depend on it (such as the
	// $changeStreamSplitLargeEvent stage, 7.0 and 6.0.9+) follow it.
	Version string
}

// Server is an in-memory MongoDB replica-set primary speaking the wire
// protocol over TCP. See the package documentation for what it emulates.
// All methods are safe for concurrent use.
type Server struct {
	opts       Options
	ln         net.Listener
	addr       string
	electionID bson.ObjectID
	uid        []byte // lsid.uid reported in change events (sha256 of "")

	mu       sync.Mutex
	dbs      map[string]*database
	oplog    []*oplogEntry
	firstSeq int64 // seq of oplog[0]
	nextSeq  int64
	oplogMem int64 // approximate bytes held by the retained oplog entries
	swept    time.Time
	clock    bson.Timestamp
	lastWall time.Time
	notify   chan struct{} // closed and replaced on every commit
	cursors  map[int64]any
	cursorID int64
	sessions map[string]*session
	locks    map[string]*txnState // ns + "\x00" + idKey -> txn holding the doc

	// images holds the UUIDs of the collections with
	// changeStreamPreAndPostImages enabled (images.go).
	images map[string]bool
	// version is Options.Version parsed (split.go).
	version [3]int

	fails  []*failPoint
	conns  map[*conn]struct{}
	closed bool
	down   bool // between Stop and Restart

	closing   chan struct{}
	wg        sync.WaitGroup
	connSeq   atomic.Int32
	requestID atomic.Int32
}

// New starts a server listening on opts.Addr. It returns once the listener
// is ready; connections are served in the background until Close.
func New(opts Options) (*Server, error) {
	if opts.ReplicaSet == "" {
		opts.ReplicaSet = "rs0"
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if err := validateTopology(opts.Topology); err != nil { // topology.go
		return nil, err
	}
	if opts.MaxOplogBytes == 0 {
		opts.MaxOplogBytes = 1 << 30
	}
	if opts.Version == "" {
		opts.Version = defaultVersion
	}
	version, err := parseVersion(opts.Version)
	if err != nil {
		return nil, fmt.Errorf("mongotest: Options.Version: %w", err)
	}
	if opts.DefaultAwaitTime <= 0 {
		opts.DefaultAwaitTime = time.Second
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("mongotest: listen %s: %w", opts.Addr, err)
	}
	s := &Server{
		opts:       opts,
		version:    version,
		ln:         ln,
		addr:       ln.Addr().String(),
		electionID: bson.NewObjectID(),
		uid:        emptyUserDigest(),
		dbs:        make(map[string]*database),
		nextSeq:    1,
		firstSeq:   1,
		notify:     make(chan struct{}),
		cursors:    make(map[int64]any),
		cursorID:   rand.Int64N(1<<52) + 1<<40,
		sessions:   make(map[string]*session),
		locks:      make(map[string]*txnState),
		conns:      make(map[*conn]struct{}),
		closing:    make(chan struct{}),
	}
	s.requestID.Store(rand.Int32N(1 << 20))
	s.mu.Lock()
	// Like a freshly initiated replica set, the oplog starts with a no-op.
	s.appendEntry(&oplogEntry{kind: opNoop, msg: "initiating set"}, s.nextTs())
	s.mu.Unlock()
	s.wg.Add(1)
	go s.acceptLoop(ln)
	return s, nil
}

// Start starts a server with default options for a test (or benchmark):
// it fails the test if the server cannot start and registers Close with
// t.Cleanup. Use New for other options, such as Logf.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := New(Options{})
	if err != nil {
		t.Fatalf("mongotest.Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Addr returns the host:port the server listens on.
func (s *Server) Addr() string { return s.addr }

// URI returns a connection string for the official driver, e.g.
// "mongodb://127.0.0.1:PORT/?replicaSet=rs0".
func (s *Server) URI() string {
	if !s.isReplSet() {
		// A mongos or a standalone has no replica set name to ask for
		// (topology.go).
		return "mongodb://" + s.addr + "/"
	}
	return "mongodb://" + s.addr + "/?replicaSet=" + s.opts.ReplicaSet
}

// ReplicaSet returns the replica set name.
func (s *Server) ReplicaSet() string { return s.opts.ReplicaSet }

// Close stops the listener, closes every client connection, wakes every
// waiting getMore and waits for all server goroutines to exit. It is safe to
// call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	close(s.closing)
	var err error
	if s.ln != nil {
		err = s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// DropConnections closes every open client connection now, as a network
// failure or a server restart would. The data, oplog, cursors and sessions
// are kept; the driver reconnects on its own.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.close()
	}
}

// Stop simulates a mongod that crashed or became unreachable: it closes the
// listener and every client connection, so connection attempts are refused
// until Restart. Like a restart of a real mongod, open cursors (including
// change streams) are lost and transactions in progress are aborted; the
// data, the oplog and retryable-write history are kept. Drivers see network
// errors and then server selection timeouts while the server is down.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.down {
		return
	}
	s.down = true
	if s.ln != nil {
		_ = s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.close()
	}
	for id := range s.cursors {
		delete(s.cursors, id)
	}
	for _, ss := range s.sessions {
		s.abortTxn(ss.txn, "the server restarted")
	}
	s.broadcast()
}

// Restart brings a stopped server back on the same address (as a new
// primary with a new electionId). It is a no-op if the server is running.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("mongotest: Restart after Close")
	}
	if !s.down {
		return nil
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("mongotest: restart listen %s: %w", s.addr, err)
	}
	s.ln = ln
	s.down = false
	s.electionID = bson.NewObjectID()
	s.wg.Add(1)
	go s.acceptLoop(ln)
	return nil
}

// ConnectionCount returns the number of open client connections.
func (s *Server) ConnectionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf("mongotest: "+format, args...)
	}
}

// stopped reports whether ln is no longer the server's listener.
func (s *Server) stopped(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed || s.ln != ln
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.stopped(ln) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay < time.Second {
					delay *= 2
				}
				select {
				case <-time.After(delay):
				case <-s.closing:
					return
				}
				continue
			}
			s.logf("accept: %v", err)
			return
		}
		delay = 0
		c := &conn{s: s, nc: nc, id: s.connSeq.Add(1), done: make(chan struct{})}
		s.mu.Lock()
		if s.closed || s.ln != ln {
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// conn is one client connection, served by one goroutine.
type conn struct {
	s    *Server
	nc   net.Conn
	id   int32
	done chan struct{}
	once sync.Once
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.nc.Close()
	})
}

func (c *conn) serve() {
	s := c.s
	defer s.wg.Done()
	defer func() {
		c.close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	s.logf("conn %d: open from %s", c.id, c.nc.RemoteAddr())
	r := bufio.NewReaderSize(c.nc, 64*1024)
	var buf []byte
	for {
		m, b, err := readMessage(r, buf)
		buf = b
		if err != nil {
			select {
			case <-c.done:
			default:
				if !errors.Is(err, net.ErrClosed) && err.Error() != "EOF" {
					s.logf("conn %d: read: %v", c.id, err)
				}
			}
			return
		}
		reply := s.handle(c, m)
		if m.moreToCome {
			continue
		}
		var out []byte
		rid := s.requestID.Add(1)
		if m.legacy {
			out = encodeOpReply(rid, m.hdr.requestID, reply)
		} else {
			out = encodeOpMsg(rid, m.hdr.requestID, reply)
		}
		if _, err := c.nc.Write(out); err != nil {
			return
		}
	}
}
