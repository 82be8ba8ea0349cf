// Package group is shale's consumer groups: Kafka's classic group protocol
// (JoinGroup, SyncGroup, Heartbeat, ...) and committed offsets, with all
// durable state in the bucket. The Kafka front end calls Handle; HTTP and the
// CLI call List, Describe, Committed and SetOffsets. See "Consumer groups" in
// docs/design.md and docs/format/groups.md.
package group

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale/tier"
)

var (
	// ErrNotCoordinator is returned when another live node coordinates the
	// group, or this node lost its claim on it to another node.
	ErrNotCoordinator = errors.New("not the coordinator of the group")
	// ErrGroupNotEmpty refuses SetOffsets while the group has live members,
	// as Kafka refuses an offset reset of an active group.
	ErrGroupNotEmpty = errors.New("group has live members")
	// ErrUnknownGroup is returned by Describe and Committed for a group the
	// bucket does not hold.
	ErrUnknownGroup = errors.New("unknown group")
)

// Members is the node membership the manager chooses coordinators from.
// The front end adapts its own membership (heartbeat objects in the bucket)
// to it. Every method must be cheap: Live is called on every group request.
type Members interface {
	// Self is this node's name, as it appears in Live.
	Self() string
	// Live returns the names of the nodes currently alive, this one
	// included. Nodes disagreeing for a while is safe (the bucket fences the
	// groups), it only delays a handover.
	Live(ctx context.Context) ([]string, error)
	// Addr maps a live node's name to what FindCoordinator answers; ok is
	// false for a node the front end does not know.
	Addr(node string) (nodeID int32, host string, port int32, ok bool)
}

// Options configure a Manager. Zero fields take the defaults of
// DefaultOptions.
type Options struct {
	Members Members
	Logger  *slog.Logger
	// Prefix is the key prefix of group objects, "groups/" by default.
	Prefix string
	// CommitLinger is how long an OffsetCommit waits for others of the same
	// group to share its PUT. Writes of one group are also serialized, so
	// commits arriving while a PUT is in flight join the next one.
	CommitLinger time.Duration
	// CheckInterval is how often the manager checks each group it
	// coordinates: that the live nodes still choose it, and (with a HEAD)
	// that its claim in the bucket is still its own.
	CheckInterval time.Duration
	// IdleTimeout unloads a group that has had no members and no requests
	// for this long, so the checks (a HEAD each) cost only for groups in
	// use. The next request loads it again (a GET and a claim PUT).
	IdleTimeout time.Duration
	// StoreTimeout bounds each store call made outside a request (timers,
	// checks).
	StoreTimeout time.Duration
	// MinSessionTimeout and MaxSessionTimeout bound a member's session
	// timeout (Kafka's group.min/max.session.timeout.ms).
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
	// Now is the clock of commit times; time.Now by default.
	Now func() time.Time
}

// DefaultOptions are Kafka's group defaults where Kafka has one.
func DefaultOptions() Options {
	return Options{
		Logger:            slog.Default(),
		Prefix:            "groups/",
		CommitLinger:      5 * time.Millisecond,
		CheckInterval:     2 * time.Second,
		IdleTimeout:       time.Minute,
		StoreTimeout:      10 * time.Second,
		MinSessionTimeout: 6 * time.Second,
		MaxSessionTimeout: 30 * time.Minute,
		Now:               time.Now,
	}
}

// Manager runs the consumer groups this node coordinates. All methods are
// safe for concurrent use.
type Manager struct {
	store tier.Store
	opts  Options
	self  string

	mu struct {
		sync.Mutex
		groups map[string]*group // the groups this node has loaded
		closed bool
	}
	stop chan struct{}
	done chan struct{}
}

// New returns a Manager of the groups store holds, coordinating those the
// live nodes choose this node for. Close stops it.
func New(store tier.Store, opts Options) *Manager {
	d := DefaultOptions()
	if opts.Logger == nil {
		opts.Logger = d.Logger
	}
	if opts.Prefix == "" {
		opts.Prefix = d.Prefix
	}
	if opts.CommitLinger <= 0 {
		opts.CommitLinger = d.CommitLinger
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = d.CheckInterval
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = d.IdleTimeout
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = d.StoreTimeout
	}
	if opts.MinSessionTimeout <= 0 {
		opts.MinSessionTimeout = d.MinSessionTimeout
	}
	if opts.MaxSessionTimeout <= 0 {
		opts.MaxSessionTimeout = d.MaxSessionTimeout
	}
	if opts.Now == nil {
		opts.Now = d.Now
	}
	m := &Manager{store: store, opts: opts, self: opts.Members.Self(), stop: make(chan struct{}), done: make(chan struct{})}
	m.mu.groups = map[string]*group{}
	go m.checkLoop()
	return m
}

// Close stops the manager: every group it holds is released (members
// waiting in JoinGroup or SyncGroup are answered NOT_COORDINATOR; they find
// the next coordinator). It is idempotent. Committed offsets are already in
// the bucket; nothing is lost.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return nil
	}
	m.mu.closed = true
	gs := m.mu.groups
	m.mu.groups = map[string]*group{}
	m.mu.Unlock()
	close(m.stop)
	<-m.done
	for _, g := range gs {
		g.mu.Lock()
		g.drop(kerr.NotCoordinator.Code)
		g.mu.Unlock()
	}
	return nil
}

// Pick is the coordinator of group among nodes: the node with the highest
// rendezvous hash of (node, group). Every node computes the same answer from
// the same live set, and a node leaving moves only the groups it held.
func Pick(group string, nodes []string) string {
	var best string
	var bestScore uint64
	for _, n := range nodes {
		h := fnv.New64a()
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write([]byte(group))
		s := mix(h.Sum64())
		if best == "" || s > bestScore || s == bestScore && n < best {
			best, bestScore = n, s
		}
	}
	return best
}

// mix is splitmix64's finalizer: FNV's high bits alone spread short, similar
// names poorly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Coordinator returns the name of the live node that coordinates group.
func (m *Manager) Coordinator(ctx context.Context, group string) (string, error) {
	live, err := m.opts.Members.Live(ctx)
	if err != nil {
		return "", fmt.Errorf("list live nodes: %w", err)
	}
	if len(live) == 0 {
		return "", errors.New("no live nodes")
	}
	return Pick(group, live), nil
}

func (m *Manager) key(group string) string { return m.opts.Prefix + escape(group) + "/state" }

// MaxVersions are the highest versions of each API Handle serves; the front
// end advertises min(these, its own). OffsetCommit v10 and OffsetFetch v10
// name topics by id, which shale does not have yet.
func MaxVersions() map[int16]int16 {
	return map[int16]int16{
		kmsg.OffsetCommit.Int16():    9,
		kmsg.OffsetFetch.Int16():     9,
		kmsg.FindCoordinator.Int16(): 6,
		kmsg.JoinGroup.Int16():       9,
		kmsg.Heartbeat.Int16():       4,
		kmsg.LeaveGroup.Int16():      5,
		kmsg.SyncGroup.Int16():       5,
		kmsg.DescribeGroups.Int16():  6,
		kmsg.ListGroups.Int16():      5,
		kmsg.DeleteGroups.Int16():    3,
		kmsg.OffsetDelete.Int16():    0,
	}
}

// Client identifies the connection a request came on, for member ids and
// DescribeGroups. The front end attaches it with WithClient.
type Client struct {
	ID   string // the request header's client id
	Host string // the peer address
}

type clientKey struct{}

// WithClient returns ctx carrying c for Handle.
func WithClient(ctx context.Context, c Client) context.Context {
	return context.WithValue(ctx, clientKey{}, c)
}

func clientOf(ctx context.Context) Client {
	c, _ := ctx.Value(clientKey{}).(Client)
	return c
}

// Handle serves one group request and returns its response. JoinGroup and
// SyncGroup block until the rebalance they take part in completes (up to
// the group's rebalance timeout) or ctx ends, so the front end must not hold
// other connections' requests behind one. OffsetCommit returns once the
// offsets are durable in the bucket. Protocol errors are in the response;
// the error is for a request type Handle does not serve or an ended ctx.
func (m *Manager) Handle(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	switch r := req.(type) {
	case *kmsg.FindCoordinatorRequest:
		return m.findCoordinator(ctx, r), nil
	case *kmsg.JoinGroupRequest:
		return m.join(ctx, r)
	case *kmsg.SyncGroupRequest:
		return m.sync(ctx, r)
	case *kmsg.HeartbeatRequest:
		return m.heartbeat(ctx, r), nil
	case *kmsg.LeaveGroupRequest:
		return m.leave(ctx, r), nil
	case *kmsg.OffsetCommitRequest:
		return m.offsetCommit(ctx, r)
	case *kmsg.OffsetFetchRequest:
		return m.offsetFetch(ctx, r), nil
	case *kmsg.ListGroupsRequest:
		return m.listGroups(ctx, r), nil
	case *kmsg.DescribeGroupsRequest:
		return m.describeGroups(ctx, r), nil
	case *kmsg.DeleteGroupsRequest:
		return m.deleteGroups(ctx, r), nil
	case *kmsg.OffsetDeleteRequest:
		return m.offsetDelete(ctx, r), nil
	}
	return nil, fmt.Errorf("group: request key %d is not a group request", req.Key())
}

func (m *Manager) findCoordinator(ctx context.Context, req *kmsg.FindCoordinatorRequest) *kmsg.FindCoordinatorResponse {
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	keys := req.CoordinatorKeys
	if req.Version < 4 {
		keys = []string{req.CoordinatorKey}
	}
	for _, k := range keys {
		c := kmsg.NewFindCoordinatorResponseCoordinator()
		c.Key = k
		code := int16(0)
		if req.CoordinatorType != 0 {
			// Transactions and share groups do not exist in shale.
			code = kerr.InvalidRequest.Code
		} else if k == "" {
			code = kerr.InvalidGroupID.Code
		} else if n, err := m.Coordinator(ctx, k); err != nil {
			code = kerr.CoordinatorNotAvailable.Code
		} else if id, host, port, ok := m.opts.Members.Addr(n); !ok {
			code = kerr.CoordinatorNotAvailable.Code
		} else {
			c.NodeID, c.Host, c.Port = id, host, port
		}
		c.ErrorCode = code
		resp.Coordinators = append(resp.Coordinators, c)
	}
	if req.Version < 4 {
		c := resp.Coordinators[0]
		resp.ErrorCode, resp.NodeID, resp.Host, resp.Port = c.ErrorCode, c.NodeID, c.Host, c.Port
		resp.Coordinators = nil
	}
	return resp
}

// errCode maps an error of getGroup or a write to a Kafka error code.
func errCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrNotCoordinator):
		return kerr.NotCoordinator.Code
	case errors.Is(err, errInvalidGroup):
		return kerr.InvalidGroupID.Code
	default:
		// The store is unreachable or the object unreadable: retriable,
		// and it makes the client look the coordinator up again.
		return kerr.CoordinatorNotAvailable.Code
	}
}

var errInvalidGroup = errors.New("invalid group id")

// getGroup returns the group, loaded and claimed by this node, with g.mu
// held; the caller unlocks. It fails with ErrNotCoordinator if the live
// nodes choose another node.
func (m *Manager) getGroup(ctx context.Context, name string) (*group, error) {
	if name == "" || len(m.key(name)) > 900 {
		return nil, errInvalidGroup
	}
	c, err := m.Coordinator(ctx, name)
	if err != nil {
		return nil, err
	}
	if c != m.self {
		m.release(name)
		return nil, ErrNotCoordinator
	}
	for {
		m.mu.Lock()
		if m.mu.closed {
			m.mu.Unlock()
			return nil, ErrNotCoordinator
		}
		g := m.mu.groups[name]
		if g == nil {
			g = newGroup(m, name)
			m.mu.groups[name] = g
		}
		m.mu.Unlock()
		g.mu.Lock()
		if g.dropped {
			g.mu.Unlock()
			continue
		}
		g.used = time.Now()
		if !g.loaded {
			if err := g.claim(ctx); err != nil {
				m.opts.Logger.Warn("load group", "group", name, "err", err)
				g.drop(kerr.NotCoordinator.Code)
				g.mu.Unlock()
				return nil, err
			}
		}
		return g, nil
	}
}

// release drops a group this node holds but no longer coordinates.
func (m *Manager) release(name string) {
	m.mu.Lock()
	g := m.mu.groups[name]
	m.mu.Unlock()
	if g != nil {
		g.mu.Lock()
		g.drop(kerr.NotCoordinator.Code)
		g.mu.Unlock()
	}
}

func (m *Manager) forget(g *group) {
	m.mu.Lock()
	if m.mu.groups[g.name] == g {
		delete(m.mu.groups, g.name)
	}
	m.mu.Unlock()
}

// checkLoop releases the groups the live nodes no longer choose this node
// for, and those whose claim another node has taken, so that a node that
// lost a group stops answering its heartbeats within CheckInterval even if
// it never writes to it again.
func (m *Manager) checkLoop() {
	defer close(m.done)
	t := time.NewTicker(m.opts.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), m.opts.StoreTimeout)
		m.check(ctx)
		cancel()
	}
}

func (m *Manager) check(ctx context.Context) {
	live, err := m.opts.Members.Live(ctx)
	if err != nil {
		return
	}
	m.mu.Lock()
	gs := make([]*group, 0, len(m.mu.groups))
	for _, g := range m.mu.groups {
		gs = append(gs, g)
	}
	m.mu.Unlock()
	for _, g := range gs {
		if Pick(g.name, live) != m.self {
			m.opts.Logger.Info("group moves to another node", "group", g.name, "to", Pick(g.name, live))
			g.mu.Lock()
			g.drop(kerr.NotCoordinator.Code)
			g.mu.Unlock()
			continue
		}
		g.mu.Lock()
		if g.loaded && !g.dropped && len(g.members) == 0 && len(g.pending) == 0 && g.batch == nil && time.Since(g.used) > m.opts.IdleTimeout {
			g.drop(kerr.NotCoordinator.Code)
		}
		if g.loaded && !g.dropped {
			// A group claimed lazily (no object yet) is lost if another
			// node created the object; a claimed one, if the ETag moved
			// and the claim in the new version is not ours.
			a, err := m.store.Head(ctx, m.key(g.name))
			missing := errors.Is(err, tier.ErrNotFound)
			if err == nil && a.ETag != g.etag || missing && g.etag != "" {
				if err := g.reread(ctx); err != nil {
					m.opts.Logger.Info("group claim lost", "group", g.name, "err", err)
					g.drop(kerr.NotCoordinator.Code)
				}
			}
		}
		g.mu.Unlock()
	}
}

func newMemberID(prefix string) string {
	var b [8]byte
	rand.Read(b[:])
	if prefix == "" {
		prefix = "member"
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
