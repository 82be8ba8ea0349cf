package group

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/shalelog/shale/tier/tiertest"
)

// kfakeMembers is the membership of one node whose Kafka address is the
// kfake broker's.
type kfakeMembers struct {
	host string
	port int32
}

func (kfakeMembers) Self() string                               { return "n1" }
func (kfakeMembers) Live(context.Context) ([]string, error)     { return []string{"n1"}, nil }
func (k kfakeMembers) Addr(string) (int32, string, int32, bool) { return 0, k.host, k.port, true }

// groupKeys are the requests the Manager answers in place of kfake's own
// group coordinator.
var groupKeys = map[int16]bool{}

func init() {
	for k := range MaxVersions() {
		groupKeys[k] = true
	}
}

// Real franz-go consumer groups (its own client-side assignors, its own
// join/sync/heartbeat/commit loop) against the Manager: kfake stands in for
// the Kafka front end (produce, fetch, metadata) and hands every group
// request to Handle. Three members consume every record; their committed
// offsets end at the end of each partition.
func TestFranzGoGroup(t *testing.T) {
	for _, balancer := range []string{"range", "cooperative-sticky"} {
		t.Run(balancer, func(t *testing.T) { runFranzGoGroup(t, balancer) })
	}
}

func runFranzGoGroup(t *testing.T, balancer string) {
	const partitions, perPartition = 6, 200
	vs := kversion.Stable()
	for k, v := range MaxVersions() {
		vs.SetMaxKeyVersion(k, v)
	}
	vs.SetMaxKeyVersion(kmsg.ConsumerGroupHeartbeat.Int16(), -1) // classic protocol only
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "t"), kfake.MaxVersions(vs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	host, port, _ := net.SplitHostPort(c.ListenAddrs()[0])
	p, _ := strconv.Atoi(port)
	opts := testOptions("n1", nil)
	opts.Members = kfakeMembers{host, int32(p)}
	m := New(tiertest.NewMemStore(), opts)
	t.Cleanup(func() { m.Close() })

	c.Control(func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !groupKeys[req.Key()] {
			return nil, nil, false
		}
		// Handle may block (JoinGroup, SyncGroup, OffsetCommit): run it
		// off kfake's loop and let other connections go on meanwhile.
		var resp kmsg.Response
		var herr error
		done := make(chan struct{})
		go func() {
			resp, herr = m.Handle(WithClient(context.Background(), Client{ID: "franz-go", Host: "127.0.0.1"}), req)
			close(done)
		}()
		c.SleepControl(func() { <-done })
		return resp, herr, true
	})

	var bal kgo.GroupBalancer = kgo.RangeBalancer()
	if balancer == "cooperative-sticky" {
		bal = kgo.CooperativeStickyBalancer()
	}
	var mu sync.Mutex
	seen := map[[2]int64]int{}
	consumed := 0
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	clients := make([]*kgo.Client, 3)
	for i := range clients {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(c.ListenAddrs()...),
			kgo.ConsumerGroup("franz-"+balancer),
			kgo.ConsumeTopics("t"),
			kgo.Balancers(bal),
			kgo.SessionTimeout(6*time.Second),
			kgo.HeartbeatInterval(200*time.Millisecond),
			kgo.AutoCommitInterval(100*time.Millisecond),
			kgo.FetchMaxWait(100*time.Millisecond),
			kgo.AutoCommitCallback(func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
				if err != nil {
					t.Logf("commit: %v", err)
					return
				}
				for _, rt := range resp.Topics {
					for _, rp := range rt.Partitions {
						if rp.ErrorCode != 0 {
							t.Logf("commit %s/%d: %v", rt.Topic, rp.Partition, kerr.ErrorForCode(rp.ErrorCode))
						}
					}
				}
			}),
		)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = cl
		wg.Go(func() {
			for ctx.Err() == nil {
				fs := cl.PollFetches(ctx)
				fs.EachRecord(func(r *kgo.Record) {
					mu.Lock()
					seen[[2]int64{int64(r.Partition), r.Offset}]++
					consumed++
					mu.Unlock()
				})
				mu.Lock()
				all := len(seen) == partitions*perPartition
				mu.Unlock()
				if all {
					cancel()
					return
				}
			}
		})
	}
	// Produce once all three members share the partitions, so that every
	// member consumes and commits.
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := m.Describe(t.Context(), "franz-"+balancer)
		n := 0
		for _, mem := range d.Members {
			n += len(mem.Assignment["t"])
		}
		if err == nil && d.State == "Stable" && len(d.Members) == 3 && n == partitions {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group not stable with 3 members: %+v %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for part := range int32(partitions) {
		for i := range perPartition {
			prod.Produce(t.Context(), &kgo.Record{Topic: "t", Partition: part, Value: fmt.Appendf(nil, "%d-%d", part, i)}, nil)
		}
	}
	if err := prod.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}

	wg.Wait()
	if len(seen) != partitions*perPartition {
		t.Fatalf("consumed %d distinct records of %d", len(seen), partitions*perPartition)
	}
	d, err := m.Describe(t.Context(), "franz-"+balancer)
	if err != nil {
		t.Fatal(err)
	}
	if d.Protocol != balancer || len(d.Members) == 0 {
		t.Fatalf("describe: protocol %q, %d members", d.Protocol, len(d.Members))
	}
	assigned := 0
	for _, mem := range d.Members {
		assigned += len(mem.Assignment["t"])
	}
	for _, cl := range clients {
		if err := cl.CommitUncommittedOffsets(t.Context()); err != nil {
			t.Errorf("commit: %v", err)
		}
	}
	for _, cl := range clients {
		cl.Close() // leaves the group
	}
	got, err := m.Committed(t.Context(), "franz-"+balancer)
	if err != nil {
		t.Fatal(err)
	}
	for part := range int32(partitions) {
		if o := got["t"][part].Offset; o != perPartition {
			t.Errorf("partition %d: committed %d, want %d", part, o, perPartition)
		}
	}
	d, err = m.Describe(t.Context(), "franz-"+balancer)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != "Empty" {
		t.Errorf("after the clients closed: state %s", d.State)
	}
	t.Logf("%s: %d records (%d deliveries), %d partitions assigned at the end", balancer, len(seen), consumed, assigned)
}

// kfakeNode is one of several nodes that all stand behind the one kfake
// broker: the test routes each group request to the node the live view
// chooses, as clients reach the coordinator FindCoordinator names.
type kfakeNode struct {
	self string
	v    *view
	host string
	port int32
}

func (k kfakeNode) Self() string                             { return k.self }
func (k kfakeNode) Live(context.Context) ([]string, error)   { return k.v.get(), nil }
func (k kfakeNode) Addr(string) (int32, string, int32, bool) { return 0, k.host, k.port, true }

// The coordinator of a real franz-go group dies: the group continues on the
// other node, every record is consumed, and the committed offsets (read by
// the new coordinator from the bucket) end at the end of each partition.
func TestFranzGoFailover(t *testing.T) {
	const partitions, perPartition = 4, 100
	vs := kversion.Stable()
	for k, v := range MaxVersions() {
		vs.SetMaxKeyVersion(k, v)
	}
	vs.SetMaxKeyVersion(kmsg.ConsumerGroupHeartbeat.Int16(), -1)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "t"), kfake.MaxVersions(vs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	host, port, _ := net.SplitHostPort(c.ListenAddrs()[0])
	p, _ := strconv.Atoi(port)
	store := tiertest.NewMemStore()
	v := newView("n1", "n2")
	group := groupFor("n1", "n1", "n2")
	var mu sync.Mutex
	ms := map[string]*Manager{}
	for _, n := range []string{"n1", "n2"} {
		opts := testOptions(n, v)
		opts.Members = kfakeNode{n, v, host, int32(p)}
		ms[n] = New(store, opts)
		t.Cleanup(func() { ms[n].Close() })
	}
	c.Control(func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !groupKeys[req.Key()] {
			return nil, nil, false
		}
		mu.Lock()
		m := ms[Pick(group, v.get())]
		mu.Unlock()
		var resp kmsg.Response
		var herr error
		done := make(chan struct{})
		go func() {
			resp, herr = m.Handle(context.Background(), req)
			close(done)
		}()
		c.SleepControl(func() { <-done })
		return resp, herr, true
	})

	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	produce := func(from, to int) {
		for part := range int32(partitions) {
			for i := from; i < to; i++ {
				prod.Produce(t.Context(), &kgo.Record{Topic: "t", Partition: part, Value: fmt.Appendf(nil, "%d-%d", part, i)}, nil)
			}
		}
		if err := prod.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}

	var smu sync.Mutex
	seen := map[[2]int64]bool{}
	count := func() int {
		smu.Lock()
		defer smu.Unlock()
		return len(seen)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	var clients []*kgo.Client
	for range 3 {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(c.ListenAddrs()...),
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics("t"),
			kgo.Balancers(kgo.CooperativeStickyBalancer()),
			kgo.SessionTimeout(6*time.Second),
			kgo.HeartbeatInterval(100*time.Millisecond),
			kgo.AutoCommitInterval(100*time.Millisecond),
			kgo.FetchMaxWait(50*time.Millisecond),
		)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, cl)
		wg.Go(func() {
			for ctx.Err() == nil {
				cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
					smu.Lock()
					seen[[2]int64{int64(r.Partition), r.Offset}] = true
					smu.Unlock()
				})
			}
		})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	produce(0, perPartition/2)
	waitFor("the first half", func() bool { return count() == partitions*perPartition/2 })
	time.Sleep(300 * time.Millisecond) // a few auto-commits
	before, err := ms["n1"].Committed(t.Context(), group)
	if err != nil {
		t.Fatal(err)
	}

	// n1 dies.
	mu.Lock()
	ms["n1"].Close()
	v.set("n2")
	mu.Unlock()
	produce(perPartition/2, perPartition)
	waitFor("every record", func() bool { return count() == partitions*perPartition })
	// Let the members settle in their new generation and commit.
	waitFor("the committed offsets at the end", func() bool {
		got, err := ms["n2"].Committed(t.Context(), group)
		if err != nil {
			return false
		}
		for part := range int32(partitions) {
			if got["t"][part].Offset != perPartition {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	for _, cl := range clients {
		cl.Close()
	}
	d, err := ms["n2"].Describe(t.Context(), group)
	if err != nil {
		t.Fatal(err)
	}
	if d.Coordinator != "n2" {
		t.Fatalf("coordinator %s after failover", d.Coordinator)
	}
	got, _ := ms["n2"].Committed(t.Context(), group)
	for part := range int32(partitions) {
		if got["t"][part].Offset < before["t"][part].Offset {
			t.Errorf("partition %d: committed %d after failover, %d before", part, got["t"][part].Offset, before["t"][part].Offset)
		}
	}
	t.Logf("committed before failover %v", before)
}
