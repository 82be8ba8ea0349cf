package group

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/tiertest"
)

func oneNode(t *testing.T, store tier.Store) (*cluster, *Manager) {
	v := newView("n1")
	m := newManager(t, store, "n1", v)
	return &cluster{ms: map[string]*Manager{"n1": m}, all: v}, m
}

// checkAcked checks that no acknowledged commit was lost or went backwards:
// the bucket holds the last acknowledged offset of each partition, or up to
// slack more (commits that landed without their acknowledgement: a member
// stopped mid-commit, or a write whose answer the store lost).
func checkAcked(t *testing.T, a *acked, m *Manager, group string, slack int64) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.high) == 0 {
		t.Error("no commit was acknowledged")
	}
	for _, e := range a.errs {
		t.Error(e)
	}
	got, err := m.Committed(t.Context(), group)
	if err != nil {
		t.Fatal(err)
	}
	for p, o := range a.high {
		// A member stopped mid-commit may have landed one more commit
		// that it never saw acknowledged.
		if g := got["t"][p].Offset; g < o || g > o+slack {
			t.Errorf("partition %d: committed %d in the bucket, %d acknowledged last", p, g, o)
		}
	}
}

// Three members join, sync and heartbeat; the group rebalances when one
// leaves and again when one dies (its session times out); the survivors
// always split every partition.
func TestThreeMembersRebalance(t *testing.T) {
	c, m := oneNode(t, tiertest.NewMemStore())
	a := &acked{high: map[int32]int64{}}
	s1 := c.startSim(t, "g", a, nil, "cooperative-sticky", "range")
	s2 := c.startSim(t, "g", a, nil, "cooperative-sticky", "range")
	s3 := c.startSim(t, "g", a, nil, "range", "roundrobin")
	gen := waitStable(t, s1, s2, s3)

	// Only range is supported by all: the coordinator chooses it.
	d, err := m.Describe(t.Context(), "g")
	if err != nil {
		t.Fatal(err)
	}
	if d.Protocol != "range" || d.State != "Stable" || len(d.Members) != 3 || d.Generation != gen {
		t.Fatalf("describe: %+v", d)
	}

	s3.leave()
	gen2 := waitStable(t, s1, s2)
	if gen2 <= gen {
		t.Fatalf("generation %d after a leave, was %d", gen2, gen)
	}

	s2.kill() // no LeaveGroup: the session timeout removes it
	gen3 := waitStable(t, s1)
	if gen3 <= gen2 {
		t.Fatalf("generation %d after a session timeout, was %d", gen3, gen2)
	}
	s1.leave()
	checkAcked(t, a, m, "g", 1)

	d, err = m.Describe(t.Context(), "g")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != "Empty" || len(d.Members) != 0 {
		t.Fatalf("after all left: %+v", d)
	}
}

// A v0 client (no member id round trip, no rebalance timeout, v0 commits
// and fetches) runs a whole generation.
func TestJoinV0(t *testing.T) {
	_, m := oneNode(t, tiertest.NewMemStore())
	jr := handle[*kmsg.JoinGroupResponse](t, m, joinReq(0, "g0", "", nil, "range"))
	if jr.ErrorCode != 0 || jr.MemberID == "" || jr.LeaderID != jr.MemberID || jr.Generation != 1 {
		t.Fatalf("join v0: %+v", jr)
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.MemberID, sync.Generation = "g0", jr.MemberID, jr.Generation
	sync.GroupAssignment = assign(jr.Members, 2)
	sr := handle[*kmsg.SyncGroupResponse](t, m, sync)
	if sr.ErrorCode != 0 || !slices.Equal(partitionsOf(sr.MemberAssignment), []int32{0, 1}) {
		t.Fatalf("sync v0: %+v", sr)
	}
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID, hb.Generation = "g0", jr.MemberID, jr.Generation
	if r := handle[*kmsg.HeartbeatResponse](t, m, hb); r.ErrorCode != 0 {
		t.Fatalf("heartbeat v0: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	// OffsetCommit v1 carries member and generation; v0 does not.
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Version = 1
	commit.Group, commit.MemberID, commit.Generation = "g0", jr.MemberID, jr.Generation
	commit.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 1, Offset: 42, Metadata: kmsg.StringPtr("m")}}}}
	if r := handle[*kmsg.OffsetCommitResponse](t, m, commit); r.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("commit v1: %v", kerr.ErrorForCode(r.Topics[0].Partitions[0].ErrorCode))
	}
	fetch := kmsg.NewPtrOffsetFetchRequest()
	fetch.Version = 0
	fetch.Group = "g0"
	fetch.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0, 1}}}
	fr := handle[*kmsg.OffsetFetchResponse](t, m, fetch)
	ps := fr.Topics[0].Partitions
	if ps[0].Offset != -1 || ps[1].Offset != 42 || *ps[1].Metadata != "m" {
		t.Fatalf("fetch v0: %+v", ps)
	}
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Group, leave.MemberID = "g0", jr.MemberID
	if r := handle[*kmsg.LeaveGroupResponse](t, m, leave); r.ErrorCode != 0 {
		t.Fatalf("leave v0: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	// A v0 commit (no member, no generation) into the now empty group, as
	// the front end decodes it from the wire.
	c0 := kmsg.NewPtrOffsetCommitRequest()
	c0.Version = 0
	c0.Group = "g0"
	c0.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 3}}}}
	wire := kmsg.NewPtrOffsetCommitRequest()
	wire.Version = 0
	if err := wire.ReadFrom(c0.AppendTo(nil)); err != nil {
		t.Fatal(err)
	}
	if r := handle[*kmsg.OffsetCommitResponse](t, m, wire); r.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("commit v0: %v", kerr.ErrorForCode(r.Topics[0].Partitions[0].ErrorCode))
	}
	if got, _ := m.Committed(t.Context(), "g0"); got["t"][0].Offset != 3 || got["t"][1].Offset != 42 {
		t.Fatalf("committed: %+v", got)
	}
}

// A static member that restarts (rejoins with its instance id and no
// member id) gets its assignment back without a rebalance.
func TestStaticRejoinWithoutRebalance(t *testing.T) {
	c, _ := oneNode(t, tiertest.NewMemStore())
	a := &acked{high: map[int32]int64{}}
	s1 := c.startSim(t, "gs", a, kmsg.StringPtr("i1"), "range")
	s2 := c.startSim(t, "gs", a, kmsg.StringPtr("i2"), "range")
	gen := waitStable(t, s1, s2)
	_, _, before, _ := s2.state()
	s1.mu.Lock()
	joinsBefore := s1.joins
	s1.mu.Unlock()
	s2.kill()
	s2 = c.startSim(t, "gs", a, kmsg.StringPtr("i2"), "range")
	if g := waitStable(t, s1, s2); g != gen {
		t.Fatalf("generation %d after a static rejoin, want %d (no rebalance)", g, gen)
	}
	_, _, after, _ := s2.state()
	if !slices.Equal(before, after) {
		t.Fatalf("assignment %v after a static rejoin, was %v", after, before)
	}
	s1.mu.Lock()
	joins := s1.joins
	s1.mu.Unlock()
	if joins != joinsBefore {
		t.Fatalf("the other member joined %d times during the static rejoin, want 0", joins-joinsBefore)
	}
	s1.leave()
	s2.leave()
	checkAcked(t, a, c.get("n1"), "gs", 1)
}

// Commits are durable in the bucket when acknowledged: a new manager on the
// same store (the node restarted) reads them, with metadata and time.
func TestCommitsSurviveRestart(t *testing.T) {
	store := minioStore(t)
	v := newView("n1")
	m := New(store, testOptions("n1", v))
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Version = 8
	commit.Group = "durable"
	commit.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{
		{Partition: 0, Offset: 7, LeaderEpoch: -1, Metadata: kmsg.StringPtr("meta")},
		{Partition: 3, Offset: 9, LeaderEpoch: 2},
	}}}
	r := handle[*kmsg.OffsetCommitResponse](t, m, commit)
	for _, p := range r.Topics[0].Partitions {
		if p.ErrorCode != 0 {
			t.Fatalf("commit: %v", kerr.ErrorForCode(p.ErrorCode))
		}
	}
	m.Close()

	m2 := newManager(t, store, "n1", v)
	fetch := kmsg.NewPtrOffsetFetchRequest()
	fetch.Version = 8
	fetch.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "durable"}} // all topics
	fr := handle[*kmsg.OffsetFetchResponse](t, m2, fetch)
	g := fr.Groups[0]
	if g.ErrorCode != 0 || len(g.Topics) != 1 || len(g.Topics[0].Partitions) != 2 {
		t.Fatalf("fetch after restart: %+v", g)
	}
	p0, p3 := g.Topics[0].Partitions[0], g.Topics[0].Partitions[1]
	if p0.Offset != 7 || *p0.Metadata != "meta" || p3.Offset != 9 || p3.LeaderEpoch != 2 {
		t.Fatalf("fetch after restart: %+v %+v", p0, p3)
	}
	got, err := m2.Committed(t.Context(), "durable")
	if err != nil {
		t.Fatal(err)
	}
	if got["t"][0].Time.IsZero() || time.Since(got["t"][0].Time) > time.Minute {
		t.Fatalf("commit time %v", got["t"][0].Time)
	}
}

// Commits arriving together share one conditional PUT.
func TestCommitsBatch(t *testing.T) {
	store := tiertest.NewCountingStore(tiertest.NewMemStore())
	v := newView("n1")
	opts := testOptions("n1", v)
	opts.CommitLinger = 200 * time.Millisecond
	m := New(store, opts)
	t.Cleanup(func() { m.Close() })
	const n = 50
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			commit := kmsg.NewPtrOffsetCommitRequest()
			commit.Version = 8
			commit.Group = "batched"
			commit.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: int32(i), Offset: int64(i)}}}}
			r, err := m.Handle(context.Background(), commit)
			if err != nil || r.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode != 0 {
				t.Errorf("commit %d: %v %+v", i, err, r)
			}
		})
	}
	close(start)
	wg.Wait()
	puts := store.Counts("").N(tiertest.OpWrites)
	if puts < 1 || puts > 5 {
		t.Fatalf("%d commits took %d PUTs, want a few", n, puts)
	}
	got, err := m.Committed(t.Context(), "batched")
	if err != nil {
		t.Fatal(err)
	}
	if len(got["t"]) != n {
		t.Fatalf("%d partitions committed, want %d", len(got["t"]), n)
	}
}

// Two managers on one bucket that both believe they coordinate a group
// (their membership views disagree) never both run one generation, and no
// acknowledged commit is lost: the bucket's conditional writes decide.
func TestTwoCoordinatorsFenced(t *testing.T) {
	store := minioStore(t)
	ma := newManager(t, store, "n1", newView("n1"))
	mb := newManager(t, store, "n2", newView("n2"))
	ms := []*Manager{ma, mb}

	var mu sync.Mutex
	genNode := map[int32]string{}
	last := map[int32]int64{} // per partition, the last acknowledged commit
	var errs []string

	var wg sync.WaitGroup
	// Joiners on both nodes: each completed generation must be unique to
	// one node.
	for i := range 4 {
		wg.Go(func() {
			m := ms[i%2]
			for range 8 {
				r, err := m.Handle(context.Background(), joinReq(3, "fenced", "", nil, "range"))
				if err != nil {
					t.Error(err)
					return
				}
				jr := r.(*kmsg.JoinGroupResponse)
				if jr.ErrorCode != 0 {
					continue
				}
				mu.Lock()
				if n, ok := genNode[jr.Generation]; ok && n != m.self {
					errs = append(errs, fmt.Sprintf("generation %d run by %s and %s", jr.Generation, n, m.self))
				}
				genNode[jr.Generation] = m.self
				mu.Unlock()
				leave := kmsg.NewPtrLeaveGroupRequest()
				leave.Version = 2
				leave.Group, leave.MemberID = "fenced", jr.MemberID
				m.Handle(context.Background(), leave)
			}
		})
	}
	// Committers: partition i is committed with increasing offsets,
	// alternately through both nodes, as admin (generation -1) commits.
	for i := range 4 {
		wg.Go(func() {
			for k := range 20 {
				m := ms[k%2]
				commit := kmsg.NewPtrOffsetCommitRequest()
				commit.Version = 8
				commit.Group = "fenced"
				off := int64(k + 1)
				commit.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: int32(i), Offset: off}}}}
				r, err := m.Handle(context.Background(), commit)
				if err != nil {
					t.Error(err)
					return
				}
				if r.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode == 0 {
					mu.Lock()
					last[int32(i)] = off
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for _, e := range errs {
		t.Error(e)
	}
	if len(genNode) == 0 {
		t.Fatal("no generation completed")
	}
	st, _, err := ma.read(t.Context(), "fenced")
	if err != nil {
		t.Fatal(err)
	}
	for p, o := range last {
		if got := st.Offsets["t"][p].Offset; got != o {
			t.Errorf("partition %d: %d in the bucket, %d acknowledged last", p, got, o)
		}
	}
	for g := range genNode {
		if g > st.Generation {
			t.Errorf("generation %d answered but the bucket holds %d", g, st.Generation)
		}
	}
	t.Logf("generations %d, claim epoch %d, acknowledged commits %v", len(genNode), st.Epoch, last)
}

// The deterministic story of a stolen group: the loser answers
// NOT_COORDINATOR and the winner has every commit.
func TestStolenGroupAnswersNotCoordinator(t *testing.T) {
	store := tiertest.NewMemStore()
	ma := newManager(t, store, "n1", newView("n1"))
	mb := newManager(t, store, "n2", newView("n2"))
	commit := func(m *Manager, member string, gen int32, off int64) int16 {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Version = 8
		req.Group, req.MemberID, req.Generation = "stolen", member, gen
		req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: off}}}}
		return handle[*kmsg.OffsetCommitResponse](t, m, req).Topics[0].Partitions[0].ErrorCode
	}
	ja := handle[*kmsg.JoinGroupResponse](t, ma, joinReq(3, "stolen", "", nil, "range"))
	if ja.ErrorCode != 0 || ja.Generation != 1 {
		t.Fatalf("join at n1: %+v", ja)
	}
	syncA := kmsg.NewPtrSyncGroupRequest()
	syncA.Version = 3
	syncA.Group, syncA.MemberID, syncA.Generation = "stolen", ja.MemberID, ja.Generation
	if r := handle[*kmsg.SyncGroupResponse](t, ma, syncA); r.ErrorCode != 0 {
		t.Fatal(kerr.ErrorForCode(r.ErrorCode))
	}
	if c := commit(ma, ja.MemberID, 1, 10); c != 0 {
		t.Fatal(kerr.ErrorForCode(c))
	}
	jb := handle[*kmsg.JoinGroupResponse](t, mb, joinReq(3, "stolen", "", nil, "range"))
	if jb.ErrorCode != 0 || jb.Generation != 2 {
		t.Fatalf("join at n2: %+v (want generation 2, after n1's 1)", jb)
	}
	if c := commit(ma, ja.MemberID, 1, 15); c != kerr.NotCoordinator.Code {
		t.Fatalf("commit at the loser: %v, want NOT_COORDINATOR", kerr.ErrorForCode(c))
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Version = 3
	sync.Group, sync.MemberID, sync.Generation = "stolen", jb.MemberID, jb.Generation
	if r := handle[*kmsg.SyncGroupResponse](t, mb, sync); r.ErrorCode != 0 {
		t.Fatal(kerr.ErrorForCode(r.ErrorCode))
	}
	if c := commit(mb, jb.MemberID, 2, 20); c != 0 {
		t.Fatal(kerr.ErrorForCode(c))
	}
	st, _, err := mb.read(t.Context(), "stolen")
	if err != nil {
		t.Fatal(err)
	}
	if st.Offsets["t"][0].Offset != 20 || st.Node != "n2" || st.Generation != 2 {
		t.Fatalf("bucket: %+v", st)
	}
}

// The coordinator dies: the live nodes choose another, which takes the
// group over with every acknowledged commit; the members rejoin there.
func TestCoordinatorFailover(t *testing.T) {
	store := minioStore(t)
	v := newView("n1", "n2")
	c := &cluster{ms: map[string]*Manager{}, all: v}
	for _, n := range []string{"n1", "n2"} {
		c.ms[n] = newManager(t, store, n, v)
	}
	group := groupFor("n1", "n1", "n2")
	a := &acked{high: map[int32]int64{}}
	sims := []*sim{
		c.startSim(t, group, a, nil, "range"),
		c.startSim(t, group, a, nil, "range"),
		c.startSim(t, group, a, nil, "range"),
	}
	gen := waitStable(t, sims...)
	time.Sleep(200 * time.Millisecond) // some commits

	// n1 dies: its manager stops and the membership drops it.
	c.get("n1").Close()
	c.mu.Lock()
	delete(c.ms, "n1")
	c.mu.Unlock()
	v.set("n2")
	gen2 := waitStable(t, sims...)
	if gen2 <= gen {
		t.Fatalf("generation %d at the new coordinator, was %d", gen2, gen)
	}
	time.Sleep(200 * time.Millisecond)
	for _, s := range sims {
		s.leave()
	}
	d, err := c.get("n2").Describe(t.Context(), group)
	if err != nil {
		t.Fatal(err)
	}
	if d.Coordinator != "n2" {
		t.Fatalf("coordinator %s", d.Coordinator)
	}
	checkAcked(t, a, c.get("n2"), group, 1)
}

// A node joins and the live nodes now choose it for the group: the old
// coordinator (alive) lets the group go and the new one takes it over.
func TestCoordinatorMovesWithMembership(t *testing.T) {
	store := tiertest.NewMemStore()
	v := newView("n1", "n2")
	c := &cluster{ms: map[string]*Manager{}, all: v}
	for _, n := range []string{"n1", "n2", "n3"} {
		c.ms[n] = newManager(t, store, n, v)
	}
	// A group n1 coordinates among {n1, n2} that moves to n3 when it joins.
	var group string
	for i := 0; ; i++ {
		group = fmt.Sprintf("m%d", i)
		if Pick(group, []string{"n1", "n2"}) == "n1" && Pick(group, []string{"n1", "n2", "n3"}) == "n3" {
			break
		}
	}
	a := &acked{high: map[int32]int64{}}
	s1 := c.startSim(t, group, a, nil, "range")
	s2 := c.startSim(t, group, a, nil, "range")
	gen := waitStable(t, s1, s2)
	v.set("n1", "n2", "n3")
	deadline := time.Now().Add(20 * time.Second)
	for {
		d, err := c.get("n3").Describe(t.Context(), group)
		if err == nil && d.Generation > gen && d.State == "Stable" && len(d.Members) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group did not move to n3: %+v %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitStable(t, s1, s2)
	s1.leave()
	s2.leave()
	checkAcked(t, a, c.get("n3"), group, 1)
	// n1 no longer serves it.
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group = group
	if r := handle[*kmsg.HeartbeatResponse](t, c.get("n1"), hb); r.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("old coordinator: %v", kerr.ErrorForCode(r.ErrorCode))
	}
}

// SetOffsets is refused while the group has live members, on its
// coordinator and on another node, and works once the group is empty;
// the members then resume from the new offsets.
func TestSetOffsets(t *testing.T) {
	store := tiertest.NewMemStore()
	v := newView("n1", "n2")
	c := &cluster{ms: map[string]*Manager{}, all: v}
	for _, n := range []string{"n1", "n2"} {
		c.ms[n] = newManager(t, store, n, v)
	}
	group := groupFor("n1", "n1", "n2")
	a := &acked{high: map[int32]int64{}}
	s := c.startSim(t, group, a, nil, "range")
	waitStable(t, s)
	reset := map[string]map[int32]int64{"t": {0: 1000, 1: 1000}}
	for _, n := range []string{"n1", "n2"} {
		if err := c.get(n).SetOffsets(t.Context(), group, reset); !errors.Is(err, ErrGroupNotEmpty) {
			t.Fatalf("SetOffsets on %s with a live member: %v", n, err)
		}
	}
	s.leave()
	// The group is empty: through the other node (read and written in the
	// bucket; the coordinator picks it up).
	if err := c.get("n2").SetOffsets(t.Context(), group, reset); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := c.get("n1").Committed(t.Context(), group)
		if err != nil {
			t.Fatal(err)
		}
		if got["t"][0].Offset == 1000 && got["t"][1].Offset == 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the coordinator did not see the reset: %+v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A member that joins now resumes from the reset offsets (and so
	// commits above them, which checkAcked's regression check verifies).
	a2 := &acked{high: map[int32]int64{0: 1000, 1: 1000}}
	s = c.startSim(t, group, a2, nil, "range")
	waitStable(t, s)
	time.Sleep(100 * time.Millisecond)
	s.leave()
	checkAcked(t, a2, c.get("n1"), group, 1)

	ls, err := c.get("n2").List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Group != group || ls[0].State != "Empty" {
		t.Fatalf("list: %+v", ls)
	}
	if _, err := c.get("n2").Describe(t.Context(), "nope"); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("describe unknown: %v", err)
	}
}

// ListGroups, DescribeGroups, OffsetDelete and DeleteGroups through Handle.
func TestAdminRequests(t *testing.T) {
	_, m := oneNode(t, tiertest.NewMemStore())
	jr := handle[*kmsg.JoinGroupResponse](t, m, joinReq(3, "adm", "", kmsg.StringPtr("inst"), "range"))
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Version = 3
	sync.Group, sync.MemberID, sync.Generation, sync.InstanceID = "adm", jr.MemberID, jr.Generation, kmsg.StringPtr("inst")
	sync.GroupAssignment = assign(jr.Members, 3)
	if r := handle[*kmsg.SyncGroupResponse](t, m, sync); r.ErrorCode != 0 {
		t.Fatal(kerr.ErrorForCode(r.ErrorCode))
	}
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Version = 8
	commit.Group, commit.MemberID, commit.Generation, commit.InstanceID = "adm", jr.MemberID, jr.Generation, kmsg.StringPtr("inst")
	commit.Topics = []kmsg.OffsetCommitRequestTopic{
		{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 5}}},
		{Topic: "other", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 6}}},
	}
	handle[*kmsg.OffsetCommitResponse](t, m, commit)

	lg := kmsg.NewPtrListGroupsRequest()
	lg.Version = 4
	lr := handle[*kmsg.ListGroupsResponse](t, m, lg)
	if len(lr.Groups) != 1 || lr.Groups[0].Group != "adm" || lr.Groups[0].GroupState != "Stable" {
		t.Fatalf("list groups: %+v", lr)
	}
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Version = 5
	dg.Groups = []string{"adm"}
	dr := handle[*kmsg.DescribeGroupsResponse](t, m, dg)
	g := dr.Groups[0]
	if g.State != "Stable" || len(g.Members) != 1 || *g.Members[0].InstanceID != "inst" || !slices.Equal(partitionsOf(g.Members[0].MemberAssignment), []int32{0, 1, 2}) {
		t.Fatalf("describe groups: %+v", g)
	}

	od := kmsg.NewPtrOffsetDeleteRequest()
	od.Group = "adm"
	od.Topics = []kmsg.OffsetDeleteRequestTopic{
		{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}},
		{Topic: "other", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}},
	}
	or := handle[*kmsg.OffsetDeleteResponse](t, m, od)
	if or.ErrorCode != 0 || or.Topics[0].Partitions[0].ErrorCode != kerr.GroupSubscribedToTopic.Code || or.Topics[1].Partitions[0].ErrorCode != 0 {
		t.Fatalf("offset delete: %+v", or)
	}

	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"adm"}
	if r := handle[*kmsg.DeleteGroupsResponse](t, m, del); r.Groups[0].ErrorCode != kerr.NonEmptyGroup.Code {
		t.Fatalf("delete a live group: %v", kerr.ErrorForCode(r.Groups[0].ErrorCode))
	}
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version = 3
	leave.Group = "adm"
	leave.Members = []kmsg.LeaveGroupRequestMember{{InstanceID: kmsg.StringPtr("inst")}}
	if r := handle[*kmsg.LeaveGroupResponse](t, m, leave); r.Members[0].ErrorCode != 0 {
		t.Fatalf("leave: %v", kerr.ErrorForCode(r.Members[0].ErrorCode))
	}
	if r := handle[*kmsg.DeleteGroupsResponse](t, m, del); r.Groups[0].ErrorCode != 0 {
		t.Fatalf("delete: %v", kerr.ErrorForCode(r.Groups[0].ErrorCode))
	}
	if r := handle[*kmsg.DeleteGroupsResponse](t, m, del); r.Groups[0].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("delete again: %v", kerr.ErrorForCode(r.Groups[0].ErrorCode))
	}
	if lr := handle[*kmsg.ListGroupsResponse](t, m, lg); len(lr.Groups) != 0 {
		t.Fatalf("list after delete: %+v", lr)
	}
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey = "adm"
	if r := handle[*kmsg.FindCoordinatorResponse](t, m, fc); r.ErrorCode != 0 || r.NodeID != 1 || r.Port != 9001 {
		t.Fatalf("find coordinator v0: %+v", r)
	}
}

// A JoinGroup with a session timeout out of bounds, or a protocol the
// group's members do not share, is refused.
func TestJoinRefusals(t *testing.T) {
	_, m := oneNode(t, tiertest.NewMemStore())
	req := joinReq(5, "ref", "", nil, "range")
	req.SessionTimeoutMillis = 1
	if r := handle[*kmsg.JoinGroupResponse](t, m, req); r.ErrorCode != kerr.InvalidSessionTimeout.Code {
		t.Fatalf("short session: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	jr := handle[*kmsg.JoinGroupResponse](t, m, joinReq(3, "ref", "", nil, "range"))
	if jr.ErrorCode != 0 {
		t.Fatal(kerr.ErrorForCode(jr.ErrorCode))
	}
	if r := handle[*kmsg.JoinGroupResponse](t, m, joinReq(3, "ref", "", nil, "roundrobin")); r.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("other protocol: %v", kerr.ErrorForCode(r.ErrorCode))
	}
}

func TestPickSpreads(t *testing.T) {
	nodes := []string{"n1", "n2", "n3"}
	count := map[string]int{}
	moved := 0
	for i := range 3000 {
		g := fmt.Sprintf("group-%d", i)
		p := Pick(g, nodes)
		count[p]++
		// Removing a node moves only the groups it held.
		if q := Pick(g, []string{"n1", "n2"}); p != "n3" && q != p {
			moved++
		}
	}
	for _, n := range nodes {
		if count[n] < 800 {
			t.Errorf("node %s coordinates %d of 3000 groups", n, count[n])
		}
	}
	if moved != 0 {
		t.Errorf("%d groups moved between surviving nodes", moved)
	}
}

func TestEscape(t *testing.T) {
	for _, name := range []string{"a", "..", ".", "a/b", "%2F", "ü", "with space", "x-y_z"} {
		e := escape(name)
		if e == "." || e == ".." || slices.Contains([]byte(e), '/') {
			t.Errorf("escape(%q) = %q", name, e)
		}
		if got, ok := unescape(e); !ok || got != name {
			t.Errorf("unescape(escape(%q)) = %q, %v", name, got, ok)
		}
	}
}

// Store writes fail, land without an answer, or land late, for a while:
// members see errors and retry, and still no acknowledged commit is lost
// or goes backwards.
func TestStoreFaults(t *testing.T) {
	store := tiertest.NewFaultStore(tiertest.NewMemStore(), 7)
	c, m := oneNode(t, store)
	a := &acked{high: map[int32]int64{}}
	s1 := c.startSim(t, "faulty", a, nil, "range")
	s2 := c.startSim(t, "faulty", a, nil, "range")
	waitStable(t, s1, s2)
	store.Set(
		tiertest.Fault{Kind: tiertest.Fail, Ops: tiertest.OpWrites, Rate: 0.1},
		tiertest.Fault{Kind: tiertest.Ambiguous, Ops: tiertest.OpWrites, Rate: 0.1},
		tiertest.Fault{Kind: tiertest.Late, Ops: tiertest.OpWrites, Rate: 0.1, Delay: 20 * time.Millisecond},
	)
	time.Sleep(1500 * time.Millisecond)
	store.Set()
	store.Wait()
	waitStable(t, s1, s2)
	time.Sleep(200 * time.Millisecond)
	s1.leave()
	s2.leave()
	if store.Injected(tiertest.Fail)+store.Injected(tiertest.Ambiguous)+store.Injected(tiertest.Late) == 0 {
		t.Fatal("no fault was injected")
	}
	checkAcked(t, a, m, "faulty", 1000)
}

// An idle empty group is unloaded (and its checks stop); the next request
// loads it again with its offsets.
func TestIdleGroupUnloads(t *testing.T) {
	store := tiertest.NewMemStore()
	v := newView("n1")
	opts := testOptions("n1", v)
	opts.IdleTimeout = 100 * time.Millisecond
	m := New(store, opts)
	t.Cleanup(func() { m.Close() })
	if err := m.SetOffsets(t.Context(), "idle", map[string]map[int32]int64{"t": {0: 5}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		g := m.local("idle")
		if g == nil {
			break
		}
		g.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("idle group stayed loaded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, err := m.Committed(t.Context(), "idle")
	if err != nil || got["t"][0].Offset != 5 {
		t.Fatalf("committed after unload: %+v %v", got, err)
	}
}
