package group

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale/tier"
)

type groupState int8

const (
	groupEmpty groupState = iota
	groupPreparingRebalance
	groupCompletingRebalance
	groupStable
	groupDead
)

func (s groupState) String() string {
	switch s {
	case groupEmpty:
		return "Empty"
	case groupPreparingRebalance:
		return "PreparingRebalance"
	case groupCompletingRebalance:
		return "CompletingRebalance"
	case groupStable:
		return "Stable"
	}
	return "Dead"
}

// waiter is a JoinGroup or SyncGroup parked until its rebalance step
// completes. ch has room for the one reply, so the group never blocks on a
// client that went away.
type waiter struct {
	req kmsg.Request
	ch  chan kmsg.Response
}

func newWaiter(req kmsg.Request) *waiter {
	return &waiter{req: req, ch: make(chan kmsg.Response, 1)}
}

func (w *waiter) wait(ctx context.Context) (kmsg.Response, error) {
	select {
	case r := <-w.ch:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type member struct {
	id       string
	instance *string
	client   string
	host     string

	join       *kmsg.JoinGroupRequest // the latest join
	waiting    *waiter                // a parked JoinGroup or SyncGroup, or nil
	assignment []byte

	t *time.Timer // session timeout
}

// group is one group this node coordinates. mu guards everything; store
// writes of the group are made holding it, which serializes them (one PUT
// in flight per group) at the price of delaying the group's heartbeats by
// one PUT.
type group struct {
	m    *Manager
	name string

	mu sync.Mutex

	used    time.Time // the last request for the group, for IdleTimeout
	loaded  bool      // claimed and read from the bucket
	dropped bool      // released: no longer served; the manager forgot it
	st      state     // the object as this node last wrote or read it
	etag    string

	state        groupState
	generation   int32
	protocolType string
	protocol     string
	leader       string
	members      map[string]*member
	pending      map[string]*member // v4+ joins told MEMBER_ID_REQUIRED
	static       map[string]string  // instance id -> member id
	protocols    map[string]int     // protocol name -> members supporting it
	nJoining     int
	tRebalance   *time.Timer
	pendingSync  map[string]struct{}
	tPendingSync *time.Timer

	batch *commitBatch // offsets waiting for the next PUT
}

func newGroup(m *Manager, name string) *group {
	return &group{
		m:         m,
		name:      name,
		members:   map[string]*member{},
		pending:   map[string]*member{},
		static:    map[string]string{},
		protocols: map[string]int{},
	}
}

func (g *group) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), g.m.opts.StoreTimeout)
}

// claim reads the group's object and writes this node's claim into it with
// the next epoch. A group without an object is claimed lazily: its first
// write creates the object with PutIfAbsent, so looking a group up never
// leaves an object behind.
func (g *group) claim(ctx context.Context) error {
	key := g.m.key(g.name)
	for range 8 {
		b, a, err := g.m.store.Get(ctx, key, 0, -1)
		if errors.Is(err, tier.ErrNotFound) {
			g.st = state{Group: g.name, Node: g.m.self, Epoch: 1}
			g.etag = ""
			g.loaded = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("read group %q: %w", g.name, err)
		}
		st, err := decodeState(key, g.name, b)
		if err != nil {
			return err
		}
		st.Node = g.m.self
		st.Epoch++
		st.Updated = g.m.opts.Now().UnixMilli()
		a, err = g.m.store.PutIfMatch(ctx, key, encodeState(&st), a.ETag)
		if errors.Is(err, tier.ErrConflict) || errors.Is(err, tier.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("claim group %q: %w", g.name, err)
		}
		g.st, g.etag, g.loaded = st, a.ETag, true
		g.generation = st.Generation
		g.m.opts.Logger.Info("group claimed", "group", g.name, "epoch", st.Epoch, "generation", st.Generation)
		return nil
	}
	return fmt.Errorf("claim group %q: %w", g.name, ErrNotCoordinator)
}

// reread replaces the in-memory copy of the object after a lost
// conditional write or a changed ETag. If the claim in the bucket is still
// this node's (another node only changed offsets, or an ambiguous write of
// ours landed), it adopts the object; otherwise it returns
// ErrNotCoordinator.
func (g *group) reread(ctx context.Context) error {
	key := g.m.key(g.name)
	b, a, err := g.m.store.Get(ctx, key, 0, -1)
	if errors.Is(err, tier.ErrNotFound) {
		return ErrNotCoordinator
	}
	if err != nil {
		return fmt.Errorf("read group %q: %w", g.name, err)
	}
	st, err := decodeState(key, g.name, b)
	if err != nil {
		return err
	}
	if st.Node != g.st.Node || st.Epoch != g.st.Epoch {
		return fmt.Errorf("group %q claimed by %s at epoch %d: %w", g.name, st.Node, st.Epoch, ErrNotCoordinator)
	}
	g.st, g.etag = st, a.ETag
	return nil
}

// write applies mutate to the group's object and replaces it
// conditionally. On a lost race it rereads and, if the claim is still this
// node's, applies mutate again to what it read; otherwise it returns
// ErrNotCoordinator and nothing of mutate is in the bucket. When write
// returns nil the change is durable.
func (g *group) write(ctx context.Context, mutate func(*state)) error {
	key := g.m.key(g.name)
	for range 8 {
		next := g.st.clone()
		mutate(&next)
		next.Updated = g.m.opts.Now().UnixMilli()
		data := encodeState(&next)
		var a tier.Attrs
		var err error
		if g.etag == "" {
			a, err = g.m.store.PutIfAbsent(ctx, key, data)
		} else {
			a, err = g.m.store.PutIfMatch(ctx, key, data, g.etag)
		}
		if err == nil {
			g.st, g.etag = next, a.ETag
			return nil
		}
		if !errors.Is(err, tier.ErrConflict) && !errors.Is(err, tier.ErrNotFound) {
			// The write may or may not have landed; the next write finds
			// out (a conflict, then reread sees our own claim).
			return fmt.Errorf("write group %q: %w", g.name, err)
		}
		if err := g.reread(ctx); err != nil {
			return err
		}
	}
	return fmt.Errorf("write group %q: too many conflicts: %w", g.name, tier.ErrConflict)
}

// drop releases the group: parked requests and pending commits are answered
// with code, timers stop, and the manager forgets it, so the next request
// loads the group afresh (and claims it, if this node is still chosen).
func (g *group) drop(code int16) {
	if g.dropped {
		return
	}
	g.dropped = true
	g.state = groupDead
	for _, m := range g.members {
		if m.t != nil {
			m.t.Stop()
		}
		if m.waiting != nil {
			g.reply(m.waiting, errResponse(m.waiting.req, code), nil)
		}
	}
	for _, m := range g.pending {
		if m.t != nil {
			m.t.Stop()
		}
	}
	if g.tRebalance != nil {
		g.tRebalance.Stop()
	}
	if g.tPendingSync != nil {
		g.tPendingSync.Stop()
	}
	if b := g.batch; b != nil {
		g.batch = nil
		b.finish(ErrNotCoordinator)
	}
	g.m.forget(g)
}

func errResponse(req kmsg.Request, code int16) kmsg.Response {
	resp := req.ResponseKind()
	switch r := resp.(type) {
	case *kmsg.JoinGroupResponse:
		r.ErrorCode = code
		r.Generation = -1
	case *kmsg.SyncGroupResponse:
		r.ErrorCode = code
	}
	return resp
}

// after runs fn with the group locked after d, unless the group was
// dropped meanwhile.
func (g *group) after(d time.Duration, fn func()) *time.Timer {
	return time.AfterFunc(d, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.dropped {
			return
		}
		fn()
	})
}

func (g *group) reply(w *waiter, resp kmsg.Response, m *member) {
	if m != nil {
		m.waiting = nil
	}
	select {
	case w.ch <- resp:
	default:
	}
	if m != nil {
		g.updateHeartbeat(m)
	}
}
