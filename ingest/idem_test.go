package ingest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/manifest"
	"github.com/shalelog/shale/tier/minio"
	"github.com/shalelog/shale/tier/object"
	"github.com/shalelog/shale/tier/tiertest"
)

// batch is n records whose values name the producer and sequence.
func batch(id int64, seq int32, n int) []record.Record {
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{Value: []byte(fmt.Sprintf("p%d-s%d", id, int(seq)+i))}
	}
	return recs
}

// waitFrames waits until the filling segment of n holds k frames.
func waitFrames(t *testing.T, n *Writer, k int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		n.mu.Lock()
		got := 0
		if n.mu.cur != nil {
			got = len(n.mu.cur.frames)
		}
		n.mu.Unlock()
		if got >= k {
			return
		}
	}
	t.Fatalf("the segment never held %d frames", k)
}

// appendAsync runs AppendProducer in the background.
func appendAsync(n *Writer, topic string, p int32, recs []record.Record, pr Producer) chan result {
	ch := make(chan result, 1)
	go func() {
		base, err := n.AppendProducer(context.Background(), topic, p, recs, pr)
		ch <- result{base, err}
	}()
	return ch
}

// TestIdempotentAppend: duplicates get their original offsets, errors
// follow Kafka's rules, and batches in one roll are judged together.
func TestIdempotentAppend(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	n, l := newNode(t, s, Options{RollAge: 300 * time.Millisecond})
	if _, err := l.CreateTopic(ctx, "t", 2, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	// A second node that stays behind: it learns of the commits below
	// only when its own commit loses a race.
	behind, _ := newNode(t, s, Options{RollAge: 300 * time.Millisecond})
	p, _ := l.ProducerID(ctx)
	q, _ := l.ProducerID(ctx)

	// Two batches of one producer in one roll, in sequence: both in.
	a := appendAsync(n, "t", 0, batch(p, 0, 3), Producer{ID: p, Seq: 0})
	waitFrames(t, n, 1)
	b := appendAsync(n, "t", 0, batch(p, 3, 2), Producer{ID: p, Seq: 3})
	if ra, rb := <-a, <-b; ra.err != nil || rb.err != nil || ra.base != 0 || rb.base != 3 {
		t.Fatalf("two batches in one roll: %+v %+v", ra, rb)
	}
	// A retry of a committed batch: its original offset, answered from
	// the node's state without entering a segment.
	if base, err := n.AppendProducer(ctx, "t", 0, batch(p, 0, 3), Producer{ID: p, Seq: 0}); err != nil || base != 0 {
		t.Fatalf("duplicate: %d, %v", base, err)
	}
	n.mu.Lock()
	entered := n.mu.cur != nil && len(n.mu.cur.frames) > 0
	n.mu.Unlock()
	if entered {
		t.Fatalf("a known duplicate entered the segment")
	}
	// A retry, on the node that is behind, in the roll of another
	// producer's new batch to the same partition, and a batch to another
	// partition: the duplicate's part is left out, so the new batch is to
	// be retried; the other partition is committed.
	dup := appendAsync(behind, "t", 0, batch(p, 3, 2), Producer{ID: p, Seq: 3})
	waitFrames(t, behind, 1)
	fresh := appendAsync(behind, "t", 0, batch(q, 0, 1), Producer{ID: q, Seq: 0})
	other := appendAsync(behind, "t", 1, batch(q, 0, 1), Producer{ID: q, Seq: 0})
	plain := make(chan error, 1)
	go func() { _, err := behind.Append(ctx, "t", 0, batch(99, 0, 1)); plain <- err }()
	waitFrames(t, behind, 4)
	if r := <-dup; r.err != nil || r.base != 3 {
		t.Fatalf("duplicate in a roll: %+v", r)
	}
	if r := <-fresh; !errors.Is(r.err, ErrRetry) {
		t.Fatalf("batch beside a duplicate: %+v, want ErrRetry", r)
	}
	if r := <-other; r.err != nil || r.base != 0 {
		t.Fatalf("other partition: %+v", r)
	}
	if err := <-plain; !errors.Is(err, ErrRetry) {
		t.Fatalf("plain append beside a duplicate: %v, want ErrRetry", err)
	}
	if base, err := n.AppendProducer(ctx, "t", 0, batch(q, 0, 1), Producer{ID: q, Seq: 0}); err != nil || base != 5 {
		t.Fatalf("retried batch: %d, %v", base, err)
	}
	for _, tc := range []struct {
		name string
		pr   Producer
		want error
	}{
		{"gap", Producer{ID: p, Seq: 9}, ErrOutOfOrderSequence},
		{"new epoch not at 0", Producer{ID: p, Epoch: 1, Seq: 5}, ErrOutOfOrderSequence},
		{"unknown producer", Producer{ID: q + 1, Seq: 1}, ErrUnknownProducer},
		{"negative sequence", Producer{ID: p, Seq: -1}, ErrInvalidProducer},
	} {
		if _, err := n.AppendProducer(ctx, "t", 0, batch(p, 0, 1), tc.pr); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := n.AppendProducer(ctx, "t", 0, batch(p, 0, 1), Producer{ID: p, Epoch: 1, Seq: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.AppendProducer(ctx, "t", 0, batch(p, 5, 1), Producer{ID: p, Epoch: 0, Seq: 5}); !errors.Is(err, ErrProducerFenced) {
		t.Fatalf("stale epoch: %v", err)
	}
	if _, end, _, _ := l.Locate(ctx, "t", 0, 0, 1); end != 7 {
		t.Fatalf("partition ends at %d, want 7", end)
	}
	// Only committed frames are held for reads: the duplicate's and the
	// retried frame's records were not committed in their roll.
	checkPartition(t, n.store, l, "t", 0, map[int64]string{0: "p0-s0", 1: "p0-s1", 2: "p0-s2", 3: "p0-s3", 4: "p0-s4", 5: "p1-s0", 6: "p0-s0"})
}

// checkPartition reads a whole partition from its objects and checks the
// value at each offset in want, and that the partition holds no more.
func checkPartition(t *testing.T, s tier.Store, l *manifest.Log, topic string, partition int32, want map[int64]string) {
	t.Helper()
	ctx := context.Background()
	got := map[int64]string{}
	for off := int64(0); ; {
		_, end, es, err := l.Locate(ctx, topic, partition, off, 100)
		if err != nil {
			t.Fatal(err)
		}
		if off >= end {
			break
		}
		for _, e := range es {
			data, _, err := s.Get(ctx, e.Object, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			parts, err := object.Decode(e.Object, data)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range parts {
				if p.Topic == topic && p.Partition == partition {
					for i, r := range p.Records {
						got[e.Base+int64(i)] = string(r.Value)
					}
				}
			}
			off = e.End()
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s/%d holds %d records, want %d", topic, partition, len(got), len(want))
	}
	for off, v := range want {
		if got[off] != v {
			t.Fatalf("%s/%d offset %d holds %q, want %q", topic, partition, off, got[off], v)
		}
	}
}

// buckets are the shared stores the multi-node tests run on: in memory,
// and a real MinIO (where a store's latency shifts the races).
var buckets = []struct {
	name  string
	open  func(t *testing.T) tier.Store
	scale time.Duration // multiplies the tests' store timeouts and delays
}{
	{"mem", func(*testing.T) tier.Store { return tiertest.NewMemStore() }, 1},
	{"minio", func(t *testing.T) tier.Store {
		ep := tiertest.StartMinIO(t)
		s, err := minio.Open(t.Context(), "minio://"+ep.AccessKey+":"+ep.SecretKey+"@"+ep.Addr+"/"+ep.Bucket+"/idem")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}, 4},
}

// twoNodes starts two writers, each with its own log and a FaultStore
// over one shared bucket.
func twoNodes(t *testing.T, bucket tier.Store, seed uint64, opts Options) (nodes [2]*Writer, logs [2]*manifest.Log, faults [2]*tiertest.FaultStore) {
	t.Helper()
	for i := range nodes {
		faults[i] = tiertest.NewFaultStore(bucket, seed+uint64(i))
		o := opts
		o.Node = fmt.Sprint("n", i)
		nodes[i], logs[i] = newNode(t, faults[i], o)
	}
	return
}

// TestRetryAcrossNodeLoss: a producer whose node failed between the
// commit's PUT and the answer retries on another node and gets the
// original offsets; if the commit did not land, the retry commits the
// batch, exactly once, also when the first node's write lands late.
func TestRetryAcrossNodeLoss(t *testing.T) {
	commits := "manifest/log/"
	for _, tc := range []struct {
		name   string
		faults []tiertest.Fault
	}{
		// The commit lands, its answer is lost, and the node cannot read
		// it back before its store timeout.
		{"landed", []tiertest.Fault{
			{Kind: tiertest.Ambiguous, Ops: tiertest.OpPutIfAbsent, Prefix: commits, Rate: 1, Times: 1},
			{Kind: tiertest.Fail, Ops: tiertest.OpGet, Prefix: commits, Rate: 1},
		}},
		{"did not land", []tiertest.Fault{{Kind: tiertest.Fail, Ops: tiertest.OpPutIfAbsent, Prefix: commits, Rate: 1}}},
		// Every write lands up to 300 ms after the node gave up on it.
		{"lands late", []tiertest.Fault{
			{Kind: tiertest.Late, Ops: tiertest.OpPutIfAbsent, Prefix: commits, Rate: 1, Delay: 300 * time.Millisecond},
			{Kind: tiertest.Fail, Ops: tiertest.OpGet, Prefix: commits, Rate: 1},
		}},
	} {
		for _, bk := range buckets {
			t.Run(tc.name+"/"+bk.name, func(t *testing.T) {
				for round := range 2 {
					var faults []tiertest.Fault
					for _, f := range tc.faults {
						f.Delay *= bk.scale
						faults = append(faults, f)
					}
					retryAcrossNodeLoss(t, bk.open(t), uint64(round), bk.scale, faults)
				}
			})
		}
	}
}

// produce sends a batch as a producer does: again after a store failure
// (its outcome unknown), until it is acknowledged.
func produce(t *testing.T, n *Writer, topic string, p int32, recs []record.Record, pr Producer) int64 {
	t.Helper()
	for attempt := 0; ; attempt++ {
		base, err := n.AppendProducer(context.Background(), topic, p, recs, pr)
		if err == nil {
			return base
		}
		if attempt == 20 || !(errors.Is(err, ErrStore) || errors.Is(err, ErrRetry) || errors.Is(err, ErrBackpressure)) {
			t.Fatalf("produce %s/%d sequence %d: %v", topic, p, pr.Seq, err)
		}
	}
}

func retryAcrossNodeLoss(t *testing.T, bucket tier.Store, seed uint64, scale time.Duration, faults []tiertest.Fault) {
	ctx := context.Background()
	nodes, logs, fs := twoNodes(t, bucket, seed, Options{RollAge: 10 * time.Millisecond, StoreTimeout: scale * 150 * time.Millisecond})
	if _, err := logs[1].CreateTopic(ctx, "t", 1, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	p, err := logs[0].ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	produce(t, nodes[0], "t", 0, batch(p, 0, 2), Producer{ID: p})
	fs[0].Set(faults...)
	_, err = nodes[0].AppendProducer(ctx, "t", 0, batch(p, 2, 3), Producer{ID: p, Seq: 2})
	if !errors.Is(err, ErrStore) {
		t.Fatalf("append on the failing node: %v, want ErrStore", err)
	}
	nodes[0].Close() // the node dies
	logs[0].Close()
	if base := produce(t, nodes[1], "t", 0, batch(p, 2, 3), Producer{ID: p, Seq: 2}); base != 2 {
		t.Fatalf("retry on the other node: %d, want 2", base)
	}
	if base := produce(t, nodes[1], "t", 0, batch(p, 5, 1), Producer{ID: p, Seq: 5}); base != 5 {
		t.Fatalf("next batch: %d, want 5", base)
	}
	fs[0].Wait() // late writes land (or lose) before the check
	fresh, err := manifest.Open(ctx, bucket, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	checkPartition(t, bucket, fresh, "t", 0, map[int64]string{0: "p0-s0", 1: "p0-s1", 2: "p0-s2", 3: "p0-s3", 4: "p0-s4", 5: "p0-s5"})
}

// TestIdempotentProducersUnderFaults: producers send batches in sequence
// to three nodes whose stores fail, answer ambiguously and land writes
// late, retrying each batch on a random node until it is acknowledged.
// Every batch is committed exactly once, at the offsets acknowledged, and
// each producer's batches are contiguous in its partition order.
func TestIdempotentProducersUnderFaults(t *testing.T) {
	for _, bk := range buckets {
		t.Run(bk.name, func(t *testing.T) { producersUnderFaults(t, bk.open(t), bk.scale) })
	}
}

func producersUnderFaults(t *testing.T, bucket tier.Store, scale time.Duration) {
	ctx := context.Background()
	const nodeCount, producers, batches, partitions = 3, 6, 25, 2
	var nodes []*Writer
	var logs []*manifest.Log
	var faults []*tiertest.FaultStore
	for i := range nodeCount {
		f := tiertest.NewFaultStore(bucket, uint64(i)+42)
		n, l := newNode(t, f, Options{Node: fmt.Sprint("n", i), RollAge: 5 * time.Millisecond, StoreTimeout: scale * 300 * time.Millisecond})
		nodes, logs, faults = append(nodes, n), append(logs, l), append(faults, f)
	}
	if _, err := logs[0].CreateTopic(ctx, "t", partitions, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range faults {
		f.Set(
			tiertest.Fault{Kind: tiertest.Ambiguous, Ops: tiertest.OpPutIfAbsent, Prefix: "manifest/log/", Rate: 0.3},
			tiertest.Fault{Kind: tiertest.Late, Ops: tiertest.OpPutIfAbsent, Prefix: "manifest/log/", Rate: 0.1, Delay: scale * 200 * time.Millisecond},
			tiertest.Fault{Kind: tiertest.Fail, Rate: 0.1},
			tiertest.Fault{Kind: tiertest.Delay, Rate: 0.3, Delay: 20 * time.Millisecond},
		)
	}
	type ack struct {
		id        int64
		seq, n    int
		base      int64
		partition int32
	}
	var (
		mu      sync.Mutex
		acks    []ack
		retries int
		wg      sync.WaitGroup
	)
	for g := range producers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			var id int64
			for {
				var err error
				if id, err = logs[g%nodeCount].ProducerID(ctx); err == nil {
					break
				}
			}
			part := int32(g % partitions)
			seq := 0
			for range batches {
				count := 1 + rng.IntN(3)
				for attempt := 0; ; attempt++ {
					if attempt > 200 {
						t.Errorf("producer %d: batch at sequence %d never acknowledged", id, seq)
						return
					}
					n := nodes[rng.IntN(nodeCount)]
					actx, cancel := context.WithTimeout(ctx, 5*time.Second)
					base, err := n.AppendProducer(actx, "t", part, batch(id, int32(seq), count), Producer{ID: id, Seq: int32(seq)})
					cancel()
					if err == nil {
						mu.Lock()
						acks = append(acks, ack{id, seq, count, base, part})
						mu.Unlock()
						break
					}
					if errors.Is(err, ErrOutOfOrderSequence) || errors.Is(err, ErrUnknownProducer) || errors.Is(err, ErrProducerFenced) {
						t.Errorf("producer %d sequence %d: %v", id, seq, err)
						return
					}
					mu.Lock()
					retries++
					mu.Unlock()
				}
				seq += count
			}
		})
	}
	wg.Wait()
	for _, f := range faults {
		f.Set()
		f.Wait()
	}
	if t.Failed() {
		return
	}
	t.Logf("%d batches acknowledged after %d failed attempts", len(acks), retries)
	fresh, err := manifest.Open(ctx, bucket, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for p := range int32(partitions) {
		want := map[int64]string{}
		var mine []ack
		for _, a := range acks {
			if a.partition == p {
				mine = append(mine, a)
			}
		}
		sort.Slice(mine, func(i, j int) bool { return mine[i].base < mine[j].base })
		next := int64(0)
		last := map[int64]int{}
		for _, a := range mine {
			if a.base != next {
				t.Fatalf("partition %d: batch of producer %d sequence %d at %d, want %d (a hole or an overlap)", p, a.id, a.seq, a.base, next)
			}
			if s, ok := last[a.id]; ok && a.seq <= s {
				t.Fatalf("producer %d: sequence %d committed after %d", a.id, a.seq, s)
			}
			last[a.id] = a.seq
			for i := range a.n {
				want[a.base+int64(i)] = fmt.Sprintf("p%d-s%d", a.id, a.seq+i)
			}
			next += int64(a.n)
		}
		// Every acknowledged batch is there once and nothing else is:
		// a batch committed twice would make the partition longer.
		checkPartition(t, bucket, fresh, "t", p, want)
	}
}

// TestEnqueuePipelines: a front end that enqueues one producer's batches
// in order, without waiting for each commit, gets them all committed in
// sequence, across rolls.
func TestEnqueuePipelines(t *testing.T) {
	ctx := context.Background()
	n, l := newNode(t, newStore(t), Options{RollAge: 2 * time.Millisecond})
	if _, err := l.CreateTopic(ctx, "t", 1, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.ProducerID(ctx)
	var acks []*Ack
	want := map[int64]string{}
	for i := range 50 {
		a, err := n.Enqueue(ctx, "t", 0, batch(p, int32(2*i), 2), &Producer{ID: p, Seq: int32(2 * i)})
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
		if i%7 == 0 {
			time.Sleep(3 * time.Millisecond) // let some rolls end between batches
		}
		want[int64(2*i)], want[int64(2*i+1)] = fmt.Sprintf("p%d-s%d", p, 2*i), fmt.Sprintf("p%d-s%d", p, 2*i+1)
	}
	for i, a := range acks {
		if base, err := a.Wait(ctx); err != nil || base != int64(2*i) {
			t.Fatalf("batch %d: %d, %v", i, base, err)
		}
	}
	if base, err := acks[3].Wait(ctx); err != nil || base != 6 {
		t.Fatalf("a second Wait: %d, %v", base, err)
	}
	checkPartition(t, n.store, l, "t", 0, want)
}

// TestRetryAfterNodeFreezesAfterCommit: the node stops right after its
// commit landed (before any producer hears of it); the producer gives up
// and retries on another node, which answers with the original offsets.
func TestRetryAfterNodeFreezesAfterCommit(t *testing.T) {
	ctx := context.Background()
	bucket := tiertest.NewMemStore()
	var armed sync.Once
	arm := make(chan struct{})
	frozen, release := make(chan struct{}), make(chan struct{})
	a, la := newNode(t, bucket, Options{Node: "a", RollAge: 5 * time.Millisecond, Hook: func(stage string) {
		select {
		case <-arm:
		default:
			return
		}
		if stage == "after-commit" {
			armed.Do(func() { close(frozen) })
			<-release
		}
	}})
	t.Cleanup(func() { close(release) }) // runs before the node's Close
	b, _ := newNode(t, bucket, Options{Node: "b", RollAge: 5 * time.Millisecond})
	if _, err := la.CreateTopic(ctx, "t", 1, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	p, _ := la.ProducerID(ctx)
	produce(t, a, "t", 0, batch(p, 0, 4), Producer{ID: p})
	close(arm)
	actx, cancel := context.WithCancel(ctx)
	go func() { <-frozen; cancel() }() // the producer times out
	if _, err := a.AppendProducer(actx, "t", 0, batch(p, 4, 2), Producer{ID: p, Seq: 4}); !errors.Is(err, context.Canceled) {
		t.Fatalf("append on the frozen node: %v", err)
	}
	if base := produce(t, b, "t", 0, batch(p, 4, 2), Producer{ID: p, Seq: 4}); base != 4 {
		t.Fatalf("retry on the other node: %d, want 4", base)
	}
	if base := produce(t, b, "t", 0, batch(p, 6, 1), Producer{ID: p, Seq: 6}); base != 6 {
		t.Fatalf("next batch: %d, want 6", base)
	}
	fresh, err := manifest.Open(ctx, bucket, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	want := map[int64]string{}
	for i := range 7 {
		want[int64(i)] = fmt.Sprintf("p%d-s%d", p, i)
	}
	checkPartition(t, bucket, fresh, "t", 0, want)
}
