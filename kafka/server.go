// Package kafka is shale's Kafka protocol front end, a client of a node as
// httpapi is. One file per API (00_produce.go, 01_fetch.go, ...), each
// registering its handler and version range with regKey in init, in the
// manner of franz-go's kfake. Every request and response goes through kmsg.
// What is supported, at which versions, is in docs/kafka.md; the design in
// docs/design.md ("Kafka front end").
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/group"
)

// Options configure a Server. Zero values take the defaults noted.
type Options struct {
	// Advertise is the host:port Metadata gives clients for this node;
	// default the listener's address.
	Advertise string
	// MaxFrameBytes bounds one request; a larger size prefix closes that
	// connection. Default 100 MiB, Kafka's socket.request.max.bytes.
	MaxFrameBytes int32
	// MaxInflight bounds the requests of one connection being handled or
	// waiting to be answered; default 16.
	MaxInflight int
	// Heartbeat is the membership interval (shale.DefaultHeartbeat).
	Heartbeat time.Duration
	// Members and Groups, when set, are the node's membership and group
	// manager, shared with the other front ends (HTTP serves the same
	// groups); their owner closes them. When nil, Listen starts its own and
	// Close closes them.
	Members *shale.Members
	Groups  *group.Manager
}

// Server serves the Kafka protocol for one node.
type Server struct {
	node    *shale.Node
	opts    Options
	logger  *slog.Logger
	members *shale.Members
	groups  *group.Manager

	ctx    context.Context // cancelled by Close: cuts long-polls
	cancel context.CancelFunc
	ln     net.Listener
	wg     sync.WaitGroup // accept loop and connections

	mu struct {
		sync.Mutex
		conns  map[net.Conn]struct{}
		closed bool
	}
}

// New returns a server for node; Listen starts it.
func New(node *shale.Node, opts Options) *Server {
	if opts.MaxFrameBytes <= 0 {
		opts.MaxFrameBytes = 100 << 20
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = 16
	}
	s := &Server{node: node, opts: opts, logger: node.Opts.Logger, members: opts.Members, groups: opts.Groups}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.conns = map[net.Conn]struct{}{}
	return s
}

// Listen binds addr (port 0 picks a free one) and serves on it as Serve
// does. It returns the bound address.
func (s *Server) Listen(ctx context.Context, addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln in the background; Close closes ln. Without
// Options.Members it first joins the bucket's membership with the
// advertised address, and without Options.Groups it starts a group
// manager. It returns the bound address.
func (s *Server) Serve(ctx context.Context, ln net.Listener) (string, error) {
	bound := ln.Addr().String()
	adv := s.opts.Advertise
	if adv == "" {
		adv = bound
	}
	if _, _, err := splitHostPort(adv); err != nil {
		ln.Close()
		return "", fmt.Errorf("advertise %q: %w", adv, err)
	}
	if s.members == nil {
		self := shale.Member{Name: s.node.Opts.Name, ID: shale.MemberID(s.node.Opts.Name), Addr: adv}
		var err error
		if s.members, err = shale.StartMembers(ctx, s.node.Store, self, s.opts.Heartbeat, s.logger); err != nil {
			ln.Close()
			return "", err
		}
	}
	if s.groups == nil {
		s.groups = NewGroups(s.node, s.members)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.accept()
	return bound, nil
}

// Members is the node membership this server keeps, for other front ends
// (the group coordinator) to share; nil before Listen.
func (s *Server) Members() *shale.Members { return s.members }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		s.mu.Lock()
		if s.mu.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.mu.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.mu.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting, closes every connection, waits for their
// handlers (produces already handed to ingest finish: their commits are
// bounded by the store timeout), and leaves the membership. It does not
// close the node. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil
	}
	s.mu.closed = true
	for c := range s.mu.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	var err error
	if s.ln != nil {
		s.ln.Close()
	}
	s.wg.Wait()
	if s.groups != nil && s.opts.Groups == nil {
		err = s.groups.Close()
	}
	if s.members != nil && s.opts.Members == nil {
		err = errors.Join(err, s.members.Close())
	}
	return err
}

// live returns the brokers to list: the live members, or this node alone
// when the store cannot be listed (clients then keep talking to us).
func (s *Server) live(ctx context.Context) []shale.Member {
	ms, err := s.members.Live(ctx)
	if err != nil {
		s.logger.Warn("kafka: list members", "err", err)
	}
	return ms
}

func splitHostPort(addr string) (string, int32, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", port, err)
	}
	if host == "" || host == "::" || host == "0.0.0.0" {
		// A wildcard listener is reached by clients on some other
		// address; without --kafka-advertise, loopback is the one that
		// surely works on this machine.
		host = "127.0.0.1"
	}
	return host, int32(p), nil
}

// handler handles one parsed request. It does its work in the
// connection's order and returns a function that completes the response;
// the connection calls it on its own goroutine, so a handler that must
// wait (a produce waiting for its commit) does the ordered part first and
// the waiting in the returned function. A nil response (acks=0) sends
// nothing. An error closes the connection.
type handler func(s *Server, cc *conn, req kmsg.Request) (func() kmsg.Response, error)

type api struct {
	min, max int16
	h        handler
}

// apis is filled by each file's init; it is read-only afterwards.
var apis = map[int16]api{}

func regKey(key, min, max int16, h handler) {
	if r := kmsg.RequestForKey(key); r == nil || max > r.MaxVersion() {
		panic(fmt.Sprintf("kafka: key %d version %d unknown to kmsg", key, max))
	}
	apis[key] = api{min, max, h}
}

// now wraps a synchronous handler's response.
func now(r kmsg.Response) func() kmsg.Response { return func() kmsg.Response { return r } }
