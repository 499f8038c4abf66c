package bustest

// gate is a TCP relay in front of one listening port of a cluster node,
// so the test can cut a node off the network at once, the way a crashed
// machine disappears, before the node's server notices anything.
//
// Why: nats-server's Server.Shutdown is a clean stop. It first steps
// down every Raft group the node leads and hands leadership to a current
// follower (server/server.go: Shutdown calls stepdownRaftNodes; raft.go:
// StepDown picks a healthy peer and sends it an EntryLeaderTransfer), so
// a stream whose leader is shut down changes leader within a few hundred
// milliseconds. A crash hands nothing over: the followers wait for their
// election timer (raft.go: minElectionTimeout 4 s .. maxElectionTimeout
// 9 s). Cutting every connection of the node first and shutting it down
// after makes its hand-over messages go nowhere.
//
// A route gate learns which server dialed it from the first line the
// dialer sends, the route CONNECT (route.go: sendRouteConnect, whose
// "name" is the dialing server's ID): every node's routes go through the
// gates of the nodes they reach, so cutting a node means closing its own
// gates and, in the other nodes' gates, the connections it dialed.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

type gate struct {
	ln net.Listener
	// route: read the dialer's CONNECT to learn its server ID.
	route bool
	// refuse reports whether connections from a server ID are refused
	// (a node cut off the network).
	refuse func(id string) bool

	mu      sync.Mutex
	backend string // the node's real address; "" while the node is down
	links   map[*link]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// link is one relayed connection.
type link struct {
	front, back net.Conn
	origin      string // dialing server's ID (route gates)
}

func (l *link) close() {
	l.front.Close()
	l.back.Close()
}

// newGate listens on 127.0.0.1:port (0: any free port).
func newGate(port int, route bool, refuse func(string) bool) (*gate, error) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, fmt.Errorf("bustest: gate on port %d: %w", port, err)
	}
	g := &gate{ln: ln, route: route, refuse: refuse, links: map[*link]struct{}{}}
	g.wg.Add(1)
	go g.accept()
	return g, nil
}

func (g *gate) port() int { return g.ln.Addr().(*net.TCPAddr).Port }

// open points the gate at the node's real address.
func (g *gate) open(backend string) {
	g.mu.Lock()
	g.backend = backend
	g.mu.Unlock()
}

// cut stops relaying to the node and closes every connection through
// the gate; new connections are accepted and closed at once, as a port
// on a dead machine answers (the dialer sees the connection fail).
func (g *gate) cut() {
	g.mu.Lock()
	g.backend = ""
	links := g.links
	g.links = map[*link]struct{}{}
	g.mu.Unlock()
	for l := range links {
		l.close()
	}
}

// cutOrigin closes the connections that server id dialed.
func (g *gate) cutOrigin(id string) {
	g.mu.Lock()
	var out []*link
	for l := range g.links {
		if l.origin == id {
			out = append(out, l)
			delete(g.links, l)
		}
	}
	g.mu.Unlock()
	for _, l := range out {
		l.close()
	}
}

// backPorts adds to ports the local ports of the gate's connections to
// its node: the remote ports the node sees for connections through it.
func (g *gate) backPorts(ports map[int]bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for l := range g.links {
		if a, ok := l.back.LocalAddr().(*net.TCPAddr); ok {
			ports[a.Port] = true
		}
	}
}

// shutdown closes the listener and every connection.
func (g *gate) shutdown() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.ln.Close()
	g.cut()
	g.wg.Wait()
}

func (g *gate) accept() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return // listener closed
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.relay(c)
		}()
	}
}

func (g *gate) relay(front net.Conn) {
	g.mu.Lock()
	backend := g.backend
	g.mu.Unlock()
	if backend == "" {
		front.Close()
		return
	}
	back, err := net.DialTimeout("tcp", backend, 5*time.Second)
	if err != nil {
		front.Close()
		return
	}
	l := &link{front: front, back: back}
	if !g.add(l) {
		l.close()
		return
	}
	defer g.remove(l)
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(front, back)
		l.close()
		close(done)
	}()
	in := io.Reader(front)
	if g.route {
		br := bufio.NewReader(front)
		head, id, err := readConnect(br)
		if err != nil || g.refuse(id) || !g.tag(l, id) {
			l.close()
			<-done
			return
		}
		if _, err := back.Write(head); err != nil {
			l.close()
			<-done
			return
		}
		in = br
	}
	_, _ = io.Copy(back, in)
	l.close()
	<-done
}

func (g *gate) add(l *link) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.backend == "" {
		return false
	}
	g.links[l] = struct{}{}
	return true
}

// tag records the link's origin; false when the link was cut meanwhile.
func (g *gate) tag(l *link, id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.links[l]; !ok {
		return false
	}
	l.origin = id
	return true
}

func (g *gate) remove(l *link) {
	g.mu.Lock()
	delete(g.links, l)
	g.mu.Unlock()
}

// errNoConnect: the dialer of a route gate sent no CONNECT first.
var errNoConnect = errors.New("bustest: route connection without a CONNECT")

// readConnect reads the dialer's lines up to and including its CONNECT
// and returns them with the CONNECT's "name" (the server ID).
func readConnect(br *bufio.Reader) ([]byte, string, error) {
	var head []byte
	for range 4 {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return nil, "", fmt.Errorf("bustest: read route CONNECT: %w", err)
		}
		head = append(head, line...)
		if rest, ok := bytes.CutPrefix(line, []byte("CONNECT ")); ok {
			var ci struct {
				Name string `json:"name"`
			}
			if err := json.Unmarshal(bytes.TrimSpace(rest), &ci); err != nil {
				return nil, "", fmt.Errorf("bustest: decode route CONNECT: %w", err)
			}
			return head, ci.Name, nil
		}
	}
	return nil, "", errNoConnect
}
