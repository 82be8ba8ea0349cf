package group

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/minio"
	"github.com/shalelog/shale/tier/tiertest"
)

// view is a membership view: the live node names, which a test changes to
// stand for nodes joining and dying. Several managers may share one view
// (they agree) or have their own (they disagree).
type view struct {
	mu   sync.Mutex
	live []string
}

func newView(live ...string) *view { return &view{live: live} }

func (v *view) set(live ...string) {
	v.mu.Lock()
	v.live = live
	v.mu.Unlock()
}

func (v *view) get() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.live)
}

// nodeMembers is one node's membership: its name and the view it sees.
type nodeMembers struct {
	self string
	v    *view
}

func (n nodeMembers) Self() string { return n.self }

func (n nodeMembers) Live(context.Context) ([]string, error) { return n.v.get(), nil }

func (n nodeMembers) Addr(node string) (int32, string, int32, bool) {
	var id int32
	fmt.Sscanf(node, "n%d", &id)
	return id, "127.0.0.1", 9000 + id, true
}

func testOptions(self string, v *view) Options {
	return Options{
		Members:           nodeMembers{self, v},
		Logger:            slog.New(slog.DiscardHandler),
		CommitLinger:      2 * time.Millisecond,
		CheckInterval:     50 * time.Millisecond,
		StoreTimeout:      10 * time.Second,
		MinSessionTimeout: 10 * time.Millisecond,
		MaxSessionTimeout: time.Minute,
	}
}

func newManager(t *testing.T, store tier.Store, self string, v *view) *Manager {
	t.Helper()
	m := New(store, testOptions(self, v))
	t.Cleanup(func() { m.Close() })
	return m
}

func minioStore(t *testing.T) tier.Store {
	t.Helper()
	ep := tiertest.StartMinIO(t)
	s, err := minio.Open(t.Context(), "minio://"+ep.AccessKey+":"+ep.SecretKey+"@"+ep.Addr+"/"+ep.Bucket+"/groups-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// groupFor returns a group name that Pick assigns to want among live.
func groupFor(want string, live ...string) string {
	for i := 0; ; i++ {
		if g := fmt.Sprintf("g%d", i); Pick(g, live) == want {
			return g
		}
	}
}

func handle[R kmsg.Response](t *testing.T, m *Manager, req kmsg.Request) R {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	resp, err := m.Handle(WithClient(ctx, Client{ID: "test", Host: "127.0.0.1"}), req)
	if err != nil {
		t.Fatalf("handle %T: %v", req, err)
	}
	return resp.(R)
}

// consumerMeta is the JoinGroup metadata of a consumer of topic.
func consumerMeta(topic string) []byte {
	md := kmsg.NewConsumerMemberMetadata()
	md.Topics = []string{topic}
	return md.AppendTo(nil)
}

func joinReq(version int16, group, memberID string, instance *string, protocols ...string) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = version
	req.Group = group
	req.MemberID = memberID
	req.InstanceID = instance
	req.SessionTimeoutMillis = 400
	req.RebalanceTimeoutMillis = 2000
	req.ProtocolType = "consumer"
	for _, p := range protocols {
		req.Protocols = append(req.Protocols, kmsg.JoinGroupRequestProtocol{Name: p, Metadata: consumerMeta("t")})
	}
	return req
}

// assign is a client-side assignor as the leader runs it: partitions of
// topic "t" dealt round robin over the members in the order given.
func assign(members []kmsg.JoinGroupResponseMember, partitions int32) []kmsg.SyncGroupRequestGroupAssignment {
	ids := make([]string, 0, len(members))
	for _, m := range members {
		ids = append(ids, m.MemberID)
	}
	sort.Strings(ids)
	byMember := map[string][]int32{}
	for p := int32(0); p < partitions; p++ {
		id := ids[int(p)%len(ids)]
		byMember[id] = append(byMember[id], p)
	}
	var out []kmsg.SyncGroupRequestGroupAssignment
	for _, id := range ids {
		a := kmsg.NewConsumerMemberAssignment()
		a.Topics = []kmsg.ConsumerMemberAssignmentTopic{{Topic: "t", Partitions: byMember[id]}}
		out = append(out, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: a.AppendTo(nil)})
	}
	return out
}

func partitionsOf(b []byte) []int32 {
	var a kmsg.ConsumerMemberAssignment
	if err := a.ReadFrom(b); err != nil {
		return nil
	}
	var out []int32
	for _, t := range a.Topics {
		out = append(out, t.Partitions...)
	}
	return out
}

// cluster is the test's set of managers by node name; clients find a
// group's coordinator through any live one, as a Kafka client does
// through its seed brokers.
type cluster struct {
	mu  sync.Mutex
	ms  map[string]*Manager
	all *view
}

func (c *cluster) get(name string) *Manager {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ms[name]
}

func (c *cluster) coordinator(ctx context.Context, group string) (*Manager, error) {
	for _, n := range c.all.get() {
		m := c.get(n)
		if m == nil {
			continue
		}
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.Version = 4
		req.CoordinatorKeys = []string{group}
		resp, err := m.Handle(ctx, req)
		if err != nil {
			return nil, err
		}
		co := resp.(*kmsg.FindCoordinatorResponse).Coordinators[0]
		if co.ErrorCode != 0 {
			continue
		}
		if cm := c.get(fmt.Sprintf("n%d", co.NodeID)); cm != nil {
			return cm, nil
		}
	}
	return nil, fmt.Errorf("no coordinator for %s", group)
}

// acked is what the group's members were told is committed: per
// partition, the highest committed offset acknowledged. Members commit
// increasing offsets from where the group's committed offset stood when
// they got the partition, so a lost commit shows as a regression.
type acked struct {
	mu   sync.Mutex
	high map[int32]int64
	errs []string
}

func (a *acked) record(p int32, o int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if o <= a.high[p] {
		a.errs = append(a.errs, fmt.Sprintf("partition %d: committed %d after %d was acknowledged", p, o, a.high[p]))
	}
	a.high[p] = o
}

// sim is a consumer group member as a Kafka client runs it (eager
// assignor): join (with KIP-394's member id round trip), the leader
// assigns, sync, fetch committed offsets, then "consume" one record per
// partition per tick, commit, heartbeat; rejoin on a rebalance; find the
// coordinator again on NOT_COORDINATOR.
type sim struct {
	t         *testing.T
	c         *cluster
	group     string
	instance  *string
	protocols []string
	parts     int32
	acked     *acked

	mu       sync.Mutex
	id       string
	gen      int32
	assigned []int32
	stable   bool
	joins    int

	stop, done chan struct{}
}

func (c *cluster) startSim(t *testing.T, group string, a *acked, instance *string, protocols ...string) *sim {
	s := &sim{t: t, c: c, group: group, instance: instance, protocols: protocols, parts: 6, acked: a, stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	t.Cleanup(s.kill)
	return s
}

// kill stops the member without leaving, as a crashed client.
func (s *sim) kill() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// leave stops the member with a LeaveGroup, as a closing client.
func (s *sim) leave() {
	s.kill()
	m, err := s.c.coordinator(context.Background(), s.group)
	if err != nil {
		s.t.Errorf("leave: %v", err)
		return
	}
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Version = 4
	req.Group = s.group
	s.mu.Lock()
	req.Members = []kmsg.LeaveGroupRequestMember{{MemberID: s.id, InstanceID: s.instance}}
	s.mu.Unlock()
	if _, err := m.Handle(context.Background(), req); err != nil {
		s.t.Errorf("leave: %v", err)
	}
}

func (s *sim) state() (id string, gen int32, assigned []int32, stable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id, s.gen, slices.Clone(s.assigned), s.stable
}

func (s *sim) run() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	pos := map[int32]int64{}
	var m *Manager
	for ctx.Err() == nil {
		if m == nil {
			var err error
			if m, err = s.c.coordinator(ctx, s.group); err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		s.mu.Lock()
		s.stable = false
		s.mu.Unlock()
		code := s.joinAndSync(ctx, m)
		if code != 0 {
			if code == kerr.NotCoordinator.Code || code == kerr.CoordinatorNotAvailable.Code {
				m = nil
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		// Fetch where the group stands for the partitions we got.
		_, gen, assigned, _ := s.state()
		clear(pos)
		fetch := kmsg.NewPtrOffsetFetchRequest()
		fetch.Version = 7
		fetch.Group = s.group
		fetch.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: assigned}}
		fr, err := m.Handle(ctx, fetch)
		if err != nil {
			return
		}
		if ec := fr.(*kmsg.OffsetFetchResponse).ErrorCode; ec != 0 {
			m = nil
			continue
		}
		for _, tp := range fr.(*kmsg.OffsetFetchResponse).Topics {
			for _, p := range tp.Partitions {
				pos[p.Partition] = max(p.Offset, 0)
			}
		}
		s.mu.Lock()
		s.stable = true
		s.mu.Unlock()
		// Consume, commit, heartbeat until the generation ends.
	tick:
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(30 * time.Millisecond):
			}
			id, _, _, _ := s.state()
			commit := kmsg.NewPtrOffsetCommitRequest()
			commit.Version = 8
			commit.Group, commit.MemberID, commit.Generation = s.group, id, gen
			ct := kmsg.NewOffsetCommitRequestTopic()
			ct.Topic = "t"
			for _, p := range assigned {
				pos[p]++
				cp := kmsg.NewOffsetCommitRequestTopicPartition()
				cp.Partition, cp.Offset = p, pos[p]
				ct.Partitions = append(ct.Partitions, cp)
			}
			commit.Topics = []kmsg.OffsetCommitRequestTopic{ct}
			if len(assigned) > 0 {
				cr, err := m.Handle(ctx, commit)
				if err != nil {
					return
				}
				for _, p := range cr.(*kmsg.OffsetCommitResponse).Topics[0].Partitions {
					if p.ErrorCode == 0 {
						s.acked.record(p.Partition, pos[p.Partition])
					}
				}
			}
			hb := kmsg.NewPtrHeartbeatRequest()
			hb.Version = 4
			hb.Group, hb.MemberID, hb.Generation, hb.InstanceID = s.group, id, gen, s.instance
			hr, err := m.Handle(ctx, hb)
			if err != nil {
				return
			}
			switch ec := hr.(*kmsg.HeartbeatResponse).ErrorCode; ec {
			case 0:
			case kerr.RebalanceInProgress.Code:
				break tick
			case kerr.NotCoordinator.Code, kerr.CoordinatorNotAvailable.Code:
				m = nil
				break tick
			default:
				s.mu.Lock()
				s.id = ""
				s.mu.Unlock()
				break tick
			}
		}
	}
}

// joinAndSync runs one JoinGroup (twice for MEMBER_ID_REQUIRED) and
// SyncGroup; it returns the error code that stopped it.
func (s *sim) joinAndSync(ctx context.Context, m *Manager) int16 {
	for {
		id, _, _, _ := s.state()
		r, err := m.Handle(WithClient(ctx, Client{ID: "sim"}), joinReq(9, s.group, id, s.instance, s.protocols...))
		if err != nil {
			return kerr.UnknownServerError.Code
		}
		jr := r.(*kmsg.JoinGroupResponse)
		switch jr.ErrorCode {
		case 0:
		case kerr.MemberIDRequired.Code:
			s.mu.Lock()
			s.id = jr.MemberID
			s.mu.Unlock()
			continue
		case kerr.UnknownMemberID.Code, kerr.IllegalGeneration.Code, kerr.FencedInstanceID.Code:
			s.mu.Lock()
			s.id = ""
			s.mu.Unlock()
			return jr.ErrorCode
		default:
			return jr.ErrorCode
		}
		s.mu.Lock()
		s.id, s.gen = jr.MemberID, jr.Generation
		s.joins++
		s.mu.Unlock()
		sync := kmsg.NewPtrSyncGroupRequest()
		sync.Version = 5
		sync.Group, sync.MemberID, sync.Generation, sync.InstanceID = s.group, jr.MemberID, jr.Generation, s.instance
		sync.ProtocolType, sync.Protocol = jr.ProtocolType, jr.Protocol
		if jr.LeaderID == jr.MemberID && !jr.SkipAssignment {
			sync.GroupAssignment = assign(jr.Members, s.parts)
		}
		r, err = m.Handle(ctx, sync)
		if err != nil {
			return kerr.UnknownServerError.Code
		}
		sr := r.(*kmsg.SyncGroupResponse)
		if sr.ErrorCode != 0 {
			return sr.ErrorCode
		}
		s.mu.Lock()
		s.assigned = partitionsOf(sr.MemberAssignment)
		s.mu.Unlock()
		return 0
	}
}

// waitStable waits until every sim is stable in one generation and their
// assignments split the partitions, and returns that generation.
func waitStable(t *testing.T, sims ...*sim) int32 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		gen, ok := int32(-1), true
		seen := map[int32]bool{}
		for _, s := range sims {
			_, g, a, stable := s.state()
			if !stable || gen != -1 && g != gen {
				ok = false
				break
			}
			gen = g
			for _, p := range a {
				if seen[p] {
					ok = false
				}
				seen[p] = true
			}
		}
		if ok && len(seen) == int(sims[0].parts) {
			// Stable for a few heartbeats, not just between two rebalances.
			time.Sleep(150 * time.Millisecond)
			_, g2, _, st := sims[0].state()
			if st && g2 == gen {
				return gen
			}
			continue
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range sims {
		id, g, a, st := s.state()
		t.Logf("sim %s gen %d assigned %v stable %v", id, g, a, st)
	}
	t.Fatal("group did not become stable")
	return 0
}
