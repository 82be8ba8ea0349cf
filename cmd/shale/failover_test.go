package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestKafkaGroupCoordinatorKill: a 3-member franz-go group (range,
// auto-commit every 200ms, seeded with both nodes) consumes a 6-partition
// topic from two `shale serve` processes on one MinIO bucket; mid-run the
// group's coordinator node is SIGKILLed. The group recovers on the other
// node and finishes: every record consumed, committed offsets end at the
// end offsets and never go backwards, and records are redelivered only
// within the at-least-once window.
//
// The window, per partition p: from F(p), the highest commit for p
// acknowledged before the kill, to H(p), the head delivered for p when the
// group last rebalanced after the kill. A record below F(p) was committed
// (its redelivery is a lost commit); a record past H(p) was delivered after
// the group recovered (its redelivery is a broken recovery). Members poll
// only once the group is stable with 2 partitions each, so the joins at the
// start (whose revokes leave the last poll uncommitted) redeliver nothing.
//
// SHALE_FAILOVER_RECORDS sets the number of records (default 100000).
func TestKafkaGroupCoordinatorKill(t *testing.T) {
	n := 100_000
	if v := os.Getenv("SHALE_FAILOVER_RECORDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 {
			t.Fatalf("SHALE_FAILOVER_RECORDS=%q: want a number ≥ 1000", v)
		}
	}
	const topic, group, partitions = "failover", "failover-group", 6
	store := minioStore(t)
	a := startServer(t, store, t.TempDir(), nil, "--store-timeout", "5s")
	b := startServer(t, store, t.TempDir(), nil, "--store-timeout", "5s")
	nodes := map[string]*server{a.kafka: a, b.kafka: b}
	seeds := kgo.SeedBrokers(a.kafka, b.kafka)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute+time.Duration(n/10_000)*time.Second)
	defer cancel()

	// Produce everything first: this test is about the group.
	prod := kafkaClient(t, seeds, kgo.ProducerLinger(5*time.Millisecond))
	kafkaCreateTopic(t, prod, topic, partitions)
	start := time.Now()
	for lo := 0; lo < n; lo += 50_000 {
		var recs []*kgo.Record
		for i := lo; i < min(n, lo+50_000); i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i))})
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("produced %d records in %v", n, time.Since(start).Round(time.Millisecond))
	end := listEnd(t, ctx, prod, topic, partitions)

	var (
		mu       sync.Mutex
		seen     = make([]uint8, n)
		unique   int
		dups     []delivery
		head     [partitions]int64 // per partition, 1 + highest offset delivered
		killedAt time.Time         // zero until the kill
		acked    [partitions]int64 // F: highest commit acknowledged before the kill
		window   [partitions]int64 // H: head at the last rebalance after the kill
		current  = make([]int, 3)  // partitions each member holds
		recovery time.Duration     // kill to the first acknowledged commit after it
	)
	stable := make(chan struct{})
	var stableOnce sync.Once
	var stableAt time.Time
	pace := max(100, n/600) // records per poll: about 10s of consuming
	for m := range 3 {
		c := kafkaClient(t, seeds, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.Balancers(kgo.RangeBalancer()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.AutoCommitInterval(200*time.Millisecond),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, as map[string][]int32) {
				mu.Lock()
				defer mu.Unlock()
				current[m] = len(as[topic]) // range is eager: this is the whole assignment
				if current[0] == 2 && current[1] == 2 && current[2] == 2 {
					stableOnce.Do(func() { stableAt = time.Now(); close(stable) })
				}
				if !killedAt.IsZero() {
					window = head
				}
			}),
			kgo.AutoCommitCallback(func(_ *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
				if err != nil {
					return
				}
				sent := map[int32]int64{}
				for _, rt := range req.Topics {
					for _, rp := range rt.Partitions {
						sent[rp.Partition] = rp.Offset
					}
				}
				mu.Lock()
				defer mu.Unlock()
				for _, rt := range resp.Topics {
					for _, rp := range rt.Partitions {
						if rp.ErrorCode != 0 {
							continue
						}
						if killedAt.IsZero() {
							acked[rp.Partition] = max(acked[rp.Partition], sent[rp.Partition])
						} else if recovery == 0 {
							recovery = time.Since(killedAt)
						}
					}
				}
			}))
		go func() {
			select {
			case <-stable:
			case <-ctx.Done():
				return
			}
			for ctx.Err() == nil {
				fs := c.PollRecords(ctx, pace)
				mu.Lock()
				fs.EachRecord(func(r *kgo.Record) {
					v, _ := strconv.Atoi(string(r.Value))
					if seen[v] > 0 {
						dups = append(dups, delivery{r.Partition, r.Offset})
					} else {
						unique++
					}
					seen[v]++
					head[r.Partition] = max(head[r.Partition], r.Offset+1)
				})
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}

	// A watcher of the committed offsets, as the coordinator serves them:
	// they never go backwards. It asks each node directly (not through a
	// client's cached coordinator, which keeps dialing the dead node).
	direct := map[*server]*kgo.Client{}
	for _, s := range nodes {
		direct[s] = kafkaClient(t, kgo.SeedBrokers(s.kafka))
	}
	var backwards []string
	var watchErr error
	committed := make([]int64, partitions)
	watchDone := make(chan struct{})
	watchCtx, stopWatch := context.WithCancel(ctx)
	go func() {
		defer close(watchDone)
		for watchCtx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
			var got map[int32]int64
			var err error
			for s, c := range direct {
				select {
				case <-s.exited:
					continue
				default:
				}
				rctx, rcancel := context.WithTimeout(watchCtx, 2*time.Second)
				got, err = offsetFetch(rctx, c, nodes, direct, group)
				rcancel()
				if err == nil {
					break
				}
			}
			mu.Lock()
			watchErr = err
			mu.Unlock()
			if err == nil {
				mu.Lock()
				for p, off := range got {
					if off < committed[p] {
						backwards = append(backwards, fmt.Sprintf("partition %d: %d after %d", p, off, committed[p]))
					}
					committed[p] = max(committed[p], off)
				}
				mu.Unlock()
			}
		}
	}()

	// Mid-run, with commits acknowledged: SIGKILL the coordinator.
	progress := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		var any bool
		for _, o := range acked {
			any = any || o > 0
		}
		return unique, any
	}
	for {
		u, committedSome := progress()
		if u >= n/3 && committedSome {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d before the kill", u, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	addr, nodeID, err := findCoordinator(ctx, direct[b].SeedBrokers()[0], group)
	if err != nil {
		t.Fatalf("find coordinator: %v", err)
	}
	coord, other := nodes[addr], a
	if coord == nil {
		t.Fatalf("coordinator %s (node %d) is neither %s nor %s", addr, nodeID, a.kafka, b.kafka)
	}
	if coord == a {
		other = b
	}
	mu.Lock()
	killedAt = time.Now()
	atKill, headAtKill, ackedAtKill := unique, head, acked
	mu.Unlock()
	coord.kill()
	t.Logf("SIGKILLed coordinator %s (node %d) after %d of %d records, %v after the group was stable; delivered %v, committed %v",
		addr, nodeID, atKill, n, killedAt.Sub(stableAt).Round(time.Millisecond), headAtKill, ackedAtKill)

	// The group finishes on the other node.
	for {
		mu.Lock()
		u := unique
		mu.Unlock()
		if u == n {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d; node %s: %s", u, n, other.kafka, other.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	consumed := time.Since(killedAt)

	// Committed offsets reach the end offsets.
	for {
		mu.Lock()
		done := slices.Equal(committed, end)
		mu.Unlock()
		if done {
			break
		}
		if ctx.Err() != nil {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("committed offsets %v, end offsets %v (last fetch: %v; consumed %v after the kill, first commit after it %v)\nnode %s: %s", committed, end, watchErr, consumed, recovery, other.kafka, other.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopWatch()
	<-watchDone

	mu.Lock()
	defer mu.Unlock()
	if len(backwards) > 0 {
		t.Fatalf("committed offsets went backwards: %v", backwards)
	}
	if recovery == 0 {
		t.Fatal("no commit acknowledged after the kill")
	}
	var thrice int
	for _, c := range seen {
		if c > 2 {
			thrice++
		}
	}
	t.Logf("records delivered more than twice: %d", thrice)
	var bound int64
	for p := range partitions {
		bound += max(0, window[p]-acked[p])
	}
	for _, d := range dups {
		if d.off < acked[d.p] || d.off >= window[d.p] {
			t.Fatalf("record %d/%d redelivered outside the at-least-once window [%d, %d)", d.p, d.off, acked[d.p], window[d.p])
		}
	}
	t.Logf("first commit acknowledged %v after the kill; all %d records consumed %v after it; %d redelivered (window %d records: committed before the kill %v, head at the last rebalance %v)",
		recovery.Round(time.Millisecond), n, consumed.Round(time.Millisecond), len(dups), bound, acked, window)
}

// findCoordinator asks the node br for the group's coordinator's address.
func findCoordinator(ctx context.Context, br *kgo.Broker, group string) (string, int32, error) {
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.CoordinatorKey, req.CoordinatorKeys = group, []string{group} // before and since v4
	resp, err := req.RequestWith(ctx, br)
	if err != nil {
		return "", 0, err
	}
	host, port, node, code := resp.Host, resp.Port, resp.NodeID, resp.ErrorCode
	if len(resp.Coordinators) > 0 {
		c := resp.Coordinators[0]
		host, port, node, code = c.Host, c.Port, c.NodeID, c.ErrorCode
	}
	if err := kerr.ErrorForCode(code); err != nil {
		return "", 0, err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))), node, nil
}

// offsetFetch asks the node c reaches for the group's coordinator, then
// the coordinator for the group's committed offsets.
func offsetFetch(ctx context.Context, c *kgo.Client, nodes map[string]*server, direct map[*server]*kgo.Client, group string) (map[int32]int64, error) {
	addr, _, err := findCoordinator(ctx, c.SeedBrokers()[0], group)
	if err != nil {
		return nil, err
	}
	s := nodes[addr]
	if s == nil {
		return nil, fmt.Errorf("coordinator %s is not a node", addr)
	}
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group // before v8
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = group // since v8; no topics: all of them
	req.Groups = append(req.Groups, rg)
	resp, err := req.RequestWith(ctx, direct[s].SeedBrokers()[0])
	if err != nil {
		return nil, err
	}
	got := map[int32]int64{}
	add := func(p int32, off int64, code int16) {
		if code == 0 && off >= 0 {
			got[p] = off
		}
	}
	for _, g := range resp.Groups {
		if err := kerr.ErrorForCode(g.ErrorCode); err != nil {
			return nil, err
		}
		for _, rt := range g.Topics {
			for _, rp := range rt.Partitions {
				add(rp.Partition, rp.Offset, rp.ErrorCode)
			}
		}
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, err
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			add(rp.Partition, rp.Offset, rp.ErrorCode)
		}
	}
	return got, nil
}

type delivery struct {
	p   int32
	off int64
}

// listEnd is the end offset of each partition of topic.
func listEnd(t *testing.T, ctx context.Context, c *kgo.Client, topic string, partitions int32) []int64 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := range partitions {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	end := make([]int64, partitions)
	for _, p := range resp.Topics[0].Partitions {
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
			t.Fatalf("list offsets %s/%d: %v", topic, p.Partition, err)
		}
		end[p.Partition] = p.Offset
	}
	return end
}
