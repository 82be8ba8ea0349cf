package shale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shalelog/shale/tier"
)

// MembersPrefix is where nodes keep their heartbeat objects, one per node:
// MembersPrefix + name + ".json" (docs/format/members.md).
const MembersPrefix = "nodes/"

// DefaultHeartbeat is how often a node rewrites its heartbeat. A node whose
// heartbeat is older than MissedHeartbeats intervals, by the store's clock,
// is not live.
const (
	DefaultHeartbeat = 2 * time.Second
	MissedHeartbeats = 3
)

// Member is one node with a Kafka listener, as its heartbeat object says.
type Member struct {
	Name string `json:"name"` // the node's name (Options.Name)
	ID   int32  `json:"id"`   // MemberID(Name): the Kafka broker id
	Addr string `json:"addr"` // advertised host:port of the Kafka listener
}

// MemberID is the Kafka broker id of a node name: a hash, so that every
// node computes every other node's id without coordination, and a node
// keeps its id as long as it keeps its name. Two names hashing to one id
// would show as one broker; with 31 bits that is unlikely for the handful
// of nodes a bucket has.
func MemberID(name string) int32 {
	return int32(crc32.Checksum([]byte(name), crc32.MakeTable(crc32.Castagnoli)) & 0x7fffffff)
}

// Members keeps this node's heartbeat object in the bucket and lists the
// nodes whose heartbeats are fresh. There is no leader and no list of
// peers: each node writes its own object and reads everyone's. Freshness is
// judged by the store's modification times, comparing each heartbeat with
// this node's latest, so the nodes' clocks need not agree.
//
// Live and Self are safe for concurrent use. The group coordinator uses
// them to choose a node; the Kafka front end to list brokers.
type Members struct {
	store    tier.Store
	self     Member
	interval time.Duration
	logger   *slog.Logger

	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu struct {
		sync.Mutex
		bodies map[string]member // heartbeat key -> last decoded body, by ETag
		live   []Member          // cached answer of Live
		at     time.Time         // local time live was computed
	}
}

type member struct {
	etag string
	m    Member
}

// StartMembers writes self's heartbeat (failing if that fails, so a node
// whose store rejects writes does not start) and keeps it fresh every
// interval (DefaultHeartbeat if zero) until Close.
func StartMembers(ctx context.Context, store tier.Store, self Member, interval time.Duration, logger *slog.Logger) (*Members, error) {
	if interval <= 0 {
		interval = DefaultHeartbeat
	}
	if logger == nil {
		logger = slog.Default()
	}
	if self.ID == 0 {
		self.ID = MemberID(self.Name)
	}
	m := &Members{store: store, self: self, interval: interval, logger: logger, stop: make(chan struct{}), done: make(chan struct{})}
	m.mu.bodies = map[string]member{}
	if err := m.beat(ctx); err != nil {
		return nil, err
	}
	go m.run()
	return m, nil
}

func (m *Members) key() string { return MembersPrefix + m.self.Name + ".json" }

func (m *Members) beat(ctx context.Context) error {
	data, _ := json.Marshal(heartbeat{Version: 1, Member: m.self})
	ctx, cancel := context.WithTimeout(ctx, m.interval*MissedHeartbeats)
	defer cancel()
	if _, err := m.store.Put(ctx, m.key(), data); err != nil {
		return fmt.Errorf("write heartbeat %s: %w", m.key(), err)
	}
	m.mu.Lock()
	m.mu.at = time.Time{} // the reference moved: recompute Live
	m.mu.Unlock()
	return nil
}

// heartbeat is the object's JSON (docs/format/members.md).
type heartbeat struct {
	Version int `json:"version"`
	Member
}

func (m *Members) run() {
	defer close(m.done)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		if err := m.beat(context.Background()); err != nil {
			m.logger.Warn("membership", "err", err)
		}
	}
}

// Self is this node.
func (m *Members) Self() Member { return m.self }

// Live returns the nodes whose heartbeat was written within
// MissedHeartbeats intervals of this node's latest one, sorted by ID; self
// is always among them. A node that died leaves the list within
// MissedHeartbeats+2 intervals of its last heartbeat (the staleness bound,
// one interval for this node's own reference heartbeat, half for the
// cache). Answers are cached for half an interval,
// so callers may ask on every request.
func (m *Members) Live(ctx context.Context) ([]Member, error) {
	m.mu.Lock()
	if !m.mu.at.IsZero() && time.Since(m.mu.at) < m.interval/2 {
		live := m.mu.live
		m.mu.Unlock()
		return live, nil
	}
	m.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, m.interval*MissedHeartbeats)
	defer cancel()
	var attrs []tier.Attrs
	for after := ""; ; {
		page, err := m.store.List(ctx, MembersPrefix, after, 1000)
		if err != nil {
			return []Member{m.self}, fmt.Errorf("list heartbeats: %w", err)
		}
		attrs = append(attrs, page...)
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Key
	}
	// The reference is this node's own heartbeat as listed: the store's
	// clock, which S3 and MinIO do not return from a write. Without it
	// (a listing that raced our write), the newest heartbeat stands in.
	var ref time.Time
	for _, a := range attrs {
		if a.Key == m.key() {
			ref = a.ModTime
			break
		}
		if a.ModTime.After(ref) {
			ref = a.ModTime
		}
	}
	bound := time.Duration(MissedHeartbeats) * m.interval
	live := []Member{m.self}
	for _, a := range attrs {
		if a.Key == m.key() || !strings.HasSuffix(a.Key, ".json") || ref.Sub(a.ModTime) > bound {
			continue
		}
		mem, err := m.read(ctx, a)
		if err != nil {
			if !errors.Is(err, tier.ErrNotFound) { // a node that just shut down
				m.logger.Warn("membership: skip heartbeat", "key", a.Key, "err", err)
			}
			continue
		}
		live = append(live, mem)
	}
	slices.SortFunc(live, func(a, b Member) int { return int(a.ID) - int(b.ID) })
	m.mu.Lock()
	m.mu.live, m.mu.at = live, time.Now()
	m.mu.Unlock()
	return live, nil
}

// read returns a heartbeat's member, reading the object only when its
// ETag changed. A heartbeat's content never changes (its time is the
// store's modification time), so stores whose ETag is a content hash
// answer most Live calls with one List.
func (m *Members) read(ctx context.Context, a tier.Attrs) (Member, error) {
	m.mu.Lock()
	b, ok := m.mu.bodies[a.Key]
	m.mu.Unlock()
	if ok && b.etag == a.ETag {
		return b.m, nil
	}
	data, attrs, err := m.store.Get(ctx, a.Key, 0, -1)
	if err != nil {
		return Member{}, err
	}
	var hb heartbeat
	if err := json.Unmarshal(data, &hb); err != nil {
		return Member{}, fmt.Errorf("decode heartbeat %s: %w", a.Key, err)
	}
	if hb.Version != 1 || hb.Name == "" || hb.Addr == "" {
		return Member{}, fmt.Errorf("decode heartbeat %s: version %d, name %q, addr %q", a.Key, hb.Version, hb.Name, hb.Addr)
	}
	if hb.ID == 0 {
		hb.ID = MemberID(hb.Name)
	}
	m.mu.Lock()
	m.mu.bodies[a.Key] = member{etag: attrs.ETag, m: hb.Member}
	m.mu.Unlock()
	return hb.Member, nil
}

// Close stops the heartbeat and deletes this node's object, so others drop
// it at once rather than after the staleness bound. It is idempotent.
func (m *Members) Close() error {
	var err error
	m.once.Do(func() {
		close(m.stop)
		<-m.done
		ctx, cancel := context.WithTimeout(context.Background(), m.interval*MissedHeartbeats)
		defer cancel()
		if e := m.store.Delete(ctx, m.key()); e != nil {
			err = fmt.Errorf("delete heartbeat %s: %w", m.key(), e)
		}
	})
	return err
}
