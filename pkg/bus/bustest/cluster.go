package bustest

// A JetStream cluster in the test process: real nats-server nodes
// (github.com/nats-io/nats-server/v2/server), each with its own client
// port, cluster (route) port and store directory, routed to one another
// on loopback. It is what an operator runs as a three-node cluster,
// minus the separate machines: the replicator under test connects with
// the list of client URLs (nats.url) exactly as it would in production.
//
// Clustering follows nats-server's own test helper
// (server/jetstream_helpers_test.go: jsClusterTempl and
// createJetStreamClusterEx): every node lists the route URLs of all the
// nodes, itself included. The list matters beyond discovery: a node that
// does not yet know its peers sizes the JetStream meta group from the
// number of configured routes (server/raft.go: bootstrapRaftNode,
// "expected < nrs"), so each node must name all of them for the meta
// group to expect three peers and need two for a quorum.
//
// Every node's client and route ports are gates (gate.go), TCP relays
// the test controls: Node.Kill cuts the node off the network first and
// shuts its server down after, which for its peers and clients is a
// crashed machine (connections end, no Raft leadership is handed over);
// Node.Stop is the clean shutdown, which hands leadership over.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/bus"
)

// ClusterFormTimeout bounds how long StartCluster waits for the cluster
// to form (full route mesh, a meta leader that sees every peer, every
// node current); past it the test fails.
const ClusterFormTimeout = 45 * time.Second

// Cluster is an n-node JetStream cluster running in this process.
type Cluster struct {
	tb    testing.TB
	Name  string
	nodes []*Node

	mu sync.Mutex
	// dead are the server IDs of killed nodes (an ID is new at every
	// start): the route gates refuse what they dial.
	dead map[string]bool
}

func (c *Cluster) refused(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead[id]
}

// Node is one server of a Cluster. Its ports and store survive Kill, so
// Restart brings the same node back (same server name, same Raft state).
type Node struct {
	// Name is the server name, the one JetStream reports as a leader
	// (ClusterInfo.Leader) or peer.
	Name string
	// ClientPort and ClusterPort are the node's public ports (its gates);
	// the server itself listens on ports of its own behind them.
	ClientPort  int
	ClusterPort int
	StoreDir    string

	c                  *Cluster
	clientGate, rtGate *gate
	mu                 sync.Mutex
	srv                *server.Server
}

// StartCluster starts an n-node cluster (n >= 3 for R3 assets) on free
// loopback ports and waits until it has formed; it fails the test if it
// has not within ClusterFormTimeout. The nodes shut down with the test.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("bustest: a cluster needs at least one node, got %d", n)
	}
	c := &Cluster{tb: tb, dead: map[string]bool{}}
	// The store directory first: cleanups run last-registered first, so
	// the nodes are shut down before the directory is removed (the other
	// way round, RemoveAll raced with servers still writing their stores:
	// "directory not empty").
	base := tb.TempDir()
	tb.Cleanup(c.Shutdown)
	for i := range n {
		nd := &Node{Name: fmt.Sprintf("n%d", i+1), StoreDir: filepath.Join(base, fmt.Sprintf("n%d", i+1)), c: c}
		var err error
		if nd.clientGate, err = newGate(0, false, c.refused); err != nil {
			tb.Fatal(err)
		}
		if nd.rtGate, err = newGate(0, true, c.refused); err != nil {
			nd.clientGate.shutdown()
			tb.Fatal(err)
		}
		nd.ClientPort, nd.ClusterPort = nd.clientGate.port(), nd.rtGate.port()
		c.nodes = append(c.nodes, nd)
	}
	c.Name = fmt.Sprintf("cdc-test-%d", c.nodes[0].ClientPort)
	for _, nd := range c.nodes {
		if err := nd.start(); err != nil {
			tb.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), ClusterFormTimeout)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		tb.Fatalf("bustest: the %d-node cluster did not form within %s: %v", n, ClusterFormTimeout, err)
	}
	return c
}

// routes is every node's route URL, the list each node is configured with.
func (c *Cluster) routes() []string {
	out := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		out[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", nd.ClusterPort)
	}
	return out
}

// options are the node's server options: the embedded server's JetStream
// settings (pkg/bus/embedded.go) plus the cluster block. The server
// listens on free ports of its own and advertises its gates, to clients
// (connect_urls) and to the other nodes (route gossip), so nothing
// reaches it but through them.
func (n *Node) options() *server.Options {
	return &server.Options{
		ServerName:         n.Name,
		Host:               "127.0.0.1",
		Port:               server.RANDOM_PORT,
		ClientAdvertise:    fmt.Sprintf("127.0.0.1:%d", n.ClientPort),
		JetStream:          true,
		StoreDir:           n.StoreDir,
		NoSigs:             true,
		JetStreamMaxStore:  -1,
		JetStreamMaxMemory: 256 << 20,
		MaxPayload:         bus.DefaultEmbeddedMaxPayload,
		Cluster: server.ClusterOpts{
			Name:      n.c.Name,
			Host:      "127.0.0.1",
			Port:      server.RANDOM_PORT,
			Advertise: fmt.Sprintf("127.0.0.1:%d", n.ClusterPort),
		},
		Routes: server.RoutesFromStr(strings.Join(n.c.routes(), ",")),
	}
}

func (n *Node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return fmt.Errorf("bustest: node %s is already running", n.Name)
	}
	srv, err := server.NewServer(n.options())
	if err != nil {
		return fmt.Errorf("bustest: node %s: %w", n.Name, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("bustest: node %s not accepting connections within 15s", n.Name)
	}
	ca := srv.ClusterAddr()
	if ca == nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("bustest: node %s has no cluster listener", n.Name)
	}
	n.clientGate.open(srv.Addr().String())
	n.rtGate.open(ca.String())
	n.srv = srv
	return nil
}

// Kill crashes the node, as far as its peers and clients can tell: its
// gates close every connection it had (clients, routes both ways) and
// refuse new ones, and only then does its server shut down, so the
// leadership hand-over of a clean shutdown reaches no one. Its store
// stays for Restart. Killing a stopped node does nothing.
func (n *Node) Kill() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv == nil {
		return
	}
	id := srv.ID()
	n.c.mu.Lock()
	n.c.dead[id] = true
	n.c.mu.Unlock()
	n.clientGate.cut()
	n.rtGate.cut()
	for _, o := range n.c.nodes {
		o.rtGate.cutOrigin(id)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}

// Stop shuts the node down cleanly (nats-server's Shutdown: leadership of
// the Raft groups it leads is handed to a current follower first), as a
// rolling restart does. Its store stays for Restart.
func (n *Node) Stop() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	n.clientGate.cut()
	n.rtGate.cut()
}

// Restart starts a killed or stopped node again behind the same ports,
// on the same store. It returns once the node accepts clients, not once
// it has caught up: wait with Cluster.WaitReady for that.
func (n *Node) Restart() error { return n.start() }

// Running reports whether the node is up.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv != nil && n.srv.Running()
}

// URL is the node's client URL.
func (n *Node) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.ClientPort) }

// Server is the running server, nil when killed.
func (n *Node) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// Nodes are the cluster's nodes, in start order.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// URLs are the client URLs (gates) of all nodes, killed ones included (a client
// given the list reconnects to whichever answers).
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		out[i] = nd.URL()
	}
	return out
}

// URL is URLs comma-separated: the form of nats.url and nats.Connect.
func (c *Cluster) URL() string { return strings.Join(c.URLs(), ",") }

// Node is the node named name (a ClusterInfo.Leader).
func (c *Cluster) Node(name string) (*Node, error) {
	for _, nd := range c.nodes {
		if nd.Name == name {
			return nd, nil
		}
	}
	return nil, fmt.Errorf("bustest: no node named %q in cluster %s", name, c.Name)
}

// Shutdown stops every node and closes the gates.
func (c *Cluster) Shutdown() {
	for _, nd := range c.nodes {
		nd.Stop()
	}
	for _, nd := range c.nodes {
		nd.clientGate.shutdown()
		nd.rtGate.shutdown()
	}
}

// WaitReady waits until every node is running and routed to every other
// node, one of them is the JetStream meta leader and sees all nodes as
// peers, and every node's meta state is current (the condition of
// nats-server's waitOnClusterReady, jetstream_helpers_test.go); it returns
// the last unmet condition when ctx ends. A killed node is unmet: call it
// after Restart, to know the cluster is whole again.
func (c *Cluster) WaitReady(ctx context.Context) error {
	for {
		why := c.notReady()
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster %s not ready: %s: %w", c.Name, why, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// notReady says why the cluster is not ready, "" when it is.
func (c *Cluster) notReady() string {
	up := make([]*server.Server, 0, len(c.nodes))
	for _, nd := range c.nodes {
		s := nd.Server()
		if s == nil || !s.Running() {
			return fmt.Sprintf("node %s is not running", nd.Name)
		}
		up = append(up, s)
	}
	var leader *server.Server
	for _, s := range up {
		// Route connections are pooled (several per remote), so count
		// the remotes, not the connections.
		got, around := c.remotes(s)
		if around != "" {
			return around
		}
		if got < len(up)-1 {
			return fmt.Sprintf("node %s routes to %d of the %d other nodes", s.Name(), got, len(up)-1)
		}
		if s.JetStreamIsLeader() {
			leader = s
		}
	}
	if leader == nil {
		return "no JetStream meta leader"
	}
	if peers := leader.JetStreamClusterPeers(); len(peers) < len(up) {
		return fmt.Sprintf("meta leader %s sees peers %v, want %d", leader.Name(), peers, len(up))
	}
	for _, s := range up {
		if !s.JetStreamIsCurrent() {
			return fmt.Sprintf("node %s's meta state is not current", s.Name())
		}
	}
	return ""
}

// remotes is how many distinct servers s has routes to (its /routez),
// and, if one of its routes bypasses the gates (the cut of Kill would
// miss it), a description of it. A route through the gates has as remote
// port a gate's (one s dialed) or that of a gate's connection to s.
func (c *Cluster) remotes(s *server.Server) (int, string) {
	rz, err := s.Routez(nil)
	if err != nil {
		return 0, ""
	}
	via := map[int]bool{}
	for _, nd := range c.nodes {
		via[nd.ClusterPort] = true
		nd.rtGate.backPorts(via)
	}
	ids := map[string]bool{}
	for _, r := range rz.Routes {
		ids[r.RemoteID] = true
		if !via[r.Port] {
			return len(ids), fmt.Sprintf("node %s has a route to %s around the gates (remote port %d)", s.Name(), r.RemoteName, r.Port)
		}
	}
	return len(ids), ""
}

// Connect connects to the cluster with every client URL, reconnecting
// forever (as bus.Connect does), and opens a JetStream context with opts.
// The connection ends with the test.
func (c *Cluster) Connect(tb testing.TB, opts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		tb.Fatalf("bustest: connect to cluster %s: %v", c.Name, err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return nc, js
}

// ErrNoLeader means the stream reports no leader (an election is under
// way, or it lost its quorum).
var ErrNoLeader = errors.New("stream has no leader")

// StreamLeader is the node leading stream, from the stream's info
// (ClusterInfo.Leader, the server name of the Raft leader).
func (c *Cluster) StreamLeader(ctx context.Context, js jetstream.JetStream, stream string) (*Node, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s info: %w", stream, err)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return nil, fmt.Errorf("stream %s: %w", stream, ErrNoLeader)
	}
	return c.Node(info.Cluster.Leader)
}

// WaitStreamLeader polls StreamLeader until the stream has a leader
// other than the node named not ("" for any), or ctx ends.
func (c *Cluster) WaitStreamLeader(ctx context.Context, js jetstream.JetStream, stream, not string) (*Node, error) {
	var last error
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		nd, err := c.StreamLeader(rctx, js, stream)
		cancel()
		switch {
		case err == nil && nd.Name != not:
			return nd, nil
		case err == nil:
			last = fmt.Errorf("stream %s is still led by %s", stream, not)
		default:
			last = err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no new leader for stream %s: %w (last: %v)", stream, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
