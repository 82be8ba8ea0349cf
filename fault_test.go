package shale_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/reader"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/fs"
	"github.com/shalelog/shale/tier/manifest"
	"github.com/shalelog/shale/tier/minio"
	"github.com/shalelog/shale/tier/tiertest"
)

// The fault test runs for a few seconds by default; SHALE_FAULT_DURATION
// (a Go duration such as 5m) makes it run longer, and SHALE_FAULT_SEED
// replays the fault decisions of an earlier run.
const defaultFaultDuration = 2 * time.Second

// faultNodes is the number of nodes sharing one bucket (SHALE_FAULT_NODES
// changes it), and faultProducers the producers appending through each.
const (
	faultNodes     = 3
	faultProducers = 3
)

// faultTopics are created before the faults start.
var faultTopics = map[string]int32{"orders": 3, "clicks": 2}

// faults are injected into every node's store while producers run: lost
// requests, slow ones, hung connections, writes that land but report
// failure and writes that land after reporting failure, on every kind of
// key, and more ambiguity on commit records, where the commit protocol
// must resolve it.
var faults = []tiertest.Fault{
	{Kind: tiertest.Delay, Rate: 0.3, Delay: 20 * time.Millisecond},
	{Kind: tiertest.Fail, Rate: 0.05},
	{Kind: tiertest.Ambiguous, Ops: tiertest.OpWrites, Rate: 0.05},
	{Kind: tiertest.Ambiguous, Ops: tiertest.OpPutIfAbsent, Prefix: "manifest/log/", Rate: 0.1},
	{Kind: tiertest.Late, Ops: tiertest.OpWrites, Rate: 0.02, Delay: 50 * time.Millisecond},
	{Kind: tiertest.Late, Ops: tiertest.OpPutIfAbsent, Prefix: "manifest/log/", Rate: 0.05, Delay: 100 * time.Millisecond},
	{Kind: tiertest.Hang, Rate: 0.003},
}

func TestFaultsMem(t *testing.T) {
	runFaults(t, tiertest.NewMemStore())
}

// The file store is the embedded default, and its conditional writes are
// its own (link, rename under flock), so it gets the same run.
func TestFaultsFile(t *testing.T) {
	s, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	runFaults(t, s)
}

func TestFaultsMinIO(t *testing.T) {
	ep := tiertest.StartMinIO(t)
	s, err := minio.Open(t.Context(), "minio://"+ep.AccessKey+":"+ep.SecretKey+"@"+ep.Addr+"/"+ep.Bucket+"/faults")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	runFaults(t, s)
}

// sentBatch is one acknowledged append.
type sentBatch struct {
	topic     string
	partition int32
	base      int64
	recs      []record.Record
	node      int
}

// faultRun is the shared state of one run.
type faultRun struct {
	nodes  []*shale.Node
	stores []*tiertest.FaultStore

	mu    sync.Mutex
	acked []sentBatch // guarded by mu

	failed  atomic.Int64 // appends that returned an error
	readErr atomic.Int64 // reads during faults that returned an error

	outageCount atomic.Int64
}

// runFaults runs faultNodes nodes on base, each through its own fault
// injector, with concurrent producers on every partition, then checks
// that every acknowledged batch is at its acknowledged offset, with the
// same contents, on every node; that no offset was assigned twice and no
// batch committed twice; and that the nodes agree on end offsets.
func runFaults(t *testing.T, base tier.Store) {
	duration := defaultFaultDuration
	if v := os.Getenv("SHALE_FAULT_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SHALE_FAULT_DURATION=%q: %v", v, err)
		}
		duration = d
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SHALE_FAULT_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("SHALE_FAULT_SEED=%q: %v", v, err)
		}
	}
	nodes := faultNodes
	if v := os.Getenv("SHALE_FAULT_NODES"); v != "" {
		var err error
		if nodes, err = strconv.Atoi(v); err != nil || nodes < 1 {
			t.Fatalf("SHALE_FAULT_NODES=%q: want a positive count", v)
		}
	}
	t.Logf("seed %d (rerun with SHALE_FAULT_SEED=%d), %d nodes, %v of faults", seed, seed, nodes, duration)

	r := &faultRun{}
	for i := range nodes {
		fs := tiertest.NewFaultStore(base, seed+uint64(i))
		r.stores = append(r.stores, fs)
		r.nodes = append(r.nodes, startFaultNode(t, fs, i))
	}
	for name, parts := range faultTopics {
		if _, err := r.nodes[0].Log.CreateTopic(t.Context(), name, parts, manifest.Retention{Ms: -1, Bytes: -1}); err != nil {
			t.Fatal(err)
		}
	}

	for _, fs := range r.stores {
		fs.Set(faults...)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range nodes {
		for p := range faultProducers {
			id := faultProducers*i + p
			rng := rand.New(rand.NewPCG(seed, uint64(id)))
			wg.Go(func() { r.produce(t, i, id, rng, stop) })
		}
		rng := rand.New(rand.NewPCG(seed, uint64(100+i)))
		wg.Go(func() { r.checkReads(t, i, rng, stop) })
	}
	r.outages(seed, duration)
	close(stop)
	wg.Wait()
	for _, fs := range r.stores {
		fs.Set()
	}
	for _, fs := range r.stores {
		fs.Wait()
	}

	var injected [5]int64
	for _, fs := range r.stores {
		for k := range injected {
			injected[k] += fs.Injected(tiertest.FaultKind(k))
		}
	}
	r.mu.Lock()
	acked := len(r.acked)
	r.mu.Unlock()
	t.Logf("during faults: %d batches acknowledged, %d appends failed, %d reads failed; %d outages; injected %d failures, %d delays, %d hangs, %d ambiguous, %d late",
		acked, r.failed.Load(), r.readErr.Load(), r.outageCount.Load(),
		injected[tiertest.Fail], injected[tiertest.Delay], injected[tiertest.Hang], injected[tiertest.Ambiguous], injected[tiertest.Late])
	if injected[tiertest.Fail] == 0 || injected[tiertest.Ambiguous] == 0 || injected[tiertest.Late] == 0 {
		t.Errorf("no failures, ambiguous or late writes were injected: the run tested little")
	}

	// With the store healthy again, every node must take appends on every
	// partition.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for i, n := range r.nodes {
		for topic, parts := range faultTopics {
			for p := range parts {
				recs := batch(rand.New(rand.NewPCG(seed, uint64(1000+i))), fmt.Sprintf("after-n%d", i), 1)
				off, err := n.Ingest.Append(ctx, topic, p, recs)
				if err != nil {
					t.Fatalf("node %d: append to %s/%d after the faults stopped: %v", i, topic, p, err)
				}
				r.ack(sentBatch{topic, p, off, recs, i})
			}
		}
	}

	// A node started now replays the log and checkpoints written under
	// faults; it must agree with the others.
	r.nodes = append(r.nodes, startFaultNode(t, base, nodes))
	for i, n := range r.nodes {
		if err := n.Log.Sync(ctx); err != nil {
			t.Fatalf("node %d: sync: %v", i, err)
		}
	}
	r.check(ctx, t)
}

// outages runs for duration, and meanwhile cuts one node at a time off the
// store for a few hundred milliseconds: every call fails at once, or every
// call hangs. The other nodes must go on committing, and the node must
// recover when its store does.
func (r *faultRun) outages(seed uint64, duration time.Duration) {
	rng := rand.New(rand.NewPCG(seed, 200))
	for end := time.Now().Add(duration); time.Now().Before(end); {
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		fs := r.stores[rng.IntN(len(r.stores))]
		kind := []tiertest.FaultKind{tiertest.Fail, tiertest.Hang}[rng.IntN(2)]
		fs.Set(append(slices.Clone(faults), tiertest.Fault{Kind: kind, Rate: 1})...)
		// Most outages are shorter than the store timeout, and retries
		// ride them out; some are longer, and fail the appends in flight
		// with their fate unknown.
		length := time.Duration(100+rng.IntN(300)) * time.Millisecond
		if rng.IntN(4) == 0 {
			length = time.Duration(1500+rng.IntN(1000)) * time.Millisecond
		}
		time.Sleep(length)
		fs.Set(faults...)
		r.outageCount.Add(1)
	}
}

func startFaultNode(t *testing.T, s tier.Store, i int) *shale.Node {
	t.Helper()
	opts := shale.DefaultOptions()
	opts.Name = fmt.Sprintf("n%d", i)
	opts.HotDir = t.TempDir()
	// Small, frequent rolls and a short store timeout, so that faults hit
	// many uploads and commits and some exhaust their retries.
	opts.RollBytes = 8 << 10
	opts.RollAge = 10 * time.Millisecond
	opts.MaxInflightRolls = 2
	opts.StoreTimeout = 1500 * time.Millisecond
	opts.CacheBytes = 16 << 20
	opts.Logger = slog.New(slog.DiscardHandler)
	if os.Getenv("SHALE_FAULT_VERBOSE") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", opts.Name)
	}
	n, err := shale.Start(t.Context(), s, opts)
	if err != nil {
		t.Fatalf("start node %d: %v", i, err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close node %d: %v", i, err)
		}
	})
	return n
}

// batch returns 1 to max records whose values are unique to this run
// (they start with id), so that a batch committed twice shows as a value
// seen twice.
func batch(rng *rand.Rand, id string, max int) []record.Record {
	recs := make([]record.Record, 1+rng.IntN(max))
	for i := range recs {
		v := fmt.Appendf(nil, "%s-%d:", id, i)
		v = append(v, bytes.Repeat([]byte{byte('a' + rng.IntN(26))}, rng.IntN(300))...)
		recs[i] = record.Record{
			Timestamp: 1_700_000_000_000 + rng.Int64N(1e9),
			Key:       fmt.Appendf(nil, "k%d", rng.IntN(50)),
			Value:     v,
		}
		if rng.IntN(4) == 0 {
			recs[i].Headers = []record.Header{{Key: "h", Value: []byte(id)}}
		}
	}
	return recs
}

func (r *faultRun) ack(b sentBatch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acked = append(r.acked, b)
}

// produce appends batches through node i until stop.
func (r *faultRun) produce(t *testing.T, i, id int, rng *rand.Rand, stop <-chan struct{}) {
	topics := slices.Sorted(func(yield func(string) bool) {
		for k := range faultTopics {
			if !yield(k) {
				return
			}
		}
	})
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		topic := topics[rng.IntN(len(topics))]
		p := int32(rng.IntN(int(faultTopics[topic])))
		recs := batch(rng, fmt.Sprintf("p%d-b%d", id, seq), 8)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		off, err := r.nodes[i].Ingest.Append(ctx, topic, p, recs)
		cancel()
		if err != nil {
			// Under faults an append may fail in any of these ways; its
			// records may still have been committed, which check allows.
			if !errors.Is(err, ingest.ErrStore) && !errors.Is(err, ingest.ErrBackpressure) &&
				!errors.Is(err, tiertest.ErrInjected) && !errors.Is(err, context.DeadlineExceeded) {
				t.Logf("node %d: append: %v", i, err)
			}
			r.failed.Add(1)
			continue
		}
		r.ack(sentBatch{topic, p, off, recs, i})
	}
}

// checkReads reads batches acknowledged by any node from node i while the
// faults run. A read may fail, but what it returns must be what was
// acknowledged.
func (r *faultRun) checkReads(t *testing.T, i int, rng *rand.Rand, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
		r.mu.Lock()
		if len(r.acked) == 0 {
			r.mu.Unlock()
			continue
		}
		b := r.acked[rng.IntN(len(r.acked))]
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res, err := r.nodes[i].Reader.Read(ctx, b.topic, b.partition, b.base, len(b.recs), 1<<20, 0)
		cancel()
		if errors.Is(err, reader.ErrOffsetOutOfRange) {
			// A store failure is returned as such; out of range means the
			// node caught up and still did not see a committed offset.
			t.Errorf("node %d, during faults: %s/%d: batch acknowledged by node %d at %d: %v", i, b.topic, b.partition, b.node, b.base, err)
		}
		var corrupt *tier.CorruptError
		if errors.As(err, &corrupt) {
			t.Errorf("node %d, during faults: %s/%d at %d: %v", i, b.topic, b.partition, b.base, err)
		}
		if err != nil {
			if !errors.Is(err, tiertest.ErrInjected) && !errors.Is(err, context.DeadlineExceeded) && r.readErr.Load() < 5 {
				t.Logf("node %d: read: %v", i, err)
			}
			r.readErr.Add(1)
			continue
		}
		if len(res.Records) == 0 {
			t.Errorf("node %d, during faults: %s/%d: read at %d, acknowledged by node %d, returned nothing (end %d)", i, b.topic, b.partition, b.base, b.node, res.End)
		}
		for j, got := range res.Records {
			if err := sameRecord(got, b.recs[j], b.base+int64(j)); err != nil {
				t.Errorf("node %d, during faults: %s/%d: batch acknowledged by node %d at %d: %v", i, b.topic, b.partition, b.node, b.base, err)
			}
		}
	}
}

// check compares every node's view of every partition with the others'
// and with what was acknowledged.
func (r *faultRun) check(ctx context.Context, t *testing.T) {
	for topic, parts := range faultTopics {
		for p := range parts {
			var want []record.Record
			for i, n := range r.nodes {
				_, infos, err := n.Log.Describe(topic)
				if err != nil {
					t.Fatalf("node %d: describe %s: %v", i, topic, err)
				}
				recs, err := readAll(ctx, n, topic, p, infos[p].End)
				if err != nil {
					t.Fatalf("node %d: %v", i, err)
				}
				if i == 0 {
					want = recs
					continue
				}
				if len(recs) != len(want) {
					t.Errorf("%s/%d: node %d has end offset %d, node 0 has %d", topic, p, i, len(recs), len(want))
				}
				for j := range min(len(recs), len(want)) {
					if err := sameRecord(recs[j], want[j], int64(j)); err != nil {
						t.Errorf("%s/%d: node %d differs from node 0: %v", topic, p, i, err)
						break
					}
				}
			}
			r.checkPartition(t, topic, p, want)
		}
	}
}

// checkPartition checks the acknowledged batches of one partition against
// its records as read.
func (r *faultRun) checkPartition(t *testing.T, topic string, p int32, log []record.Record) {
	r.mu.Lock()
	var acked []sentBatch
	for _, b := range r.acked {
		if b.topic == topic && b.partition == p {
			acked = append(acked, b)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(acked, func(a, b sentBatch) int { return cmp.Compare(a.base, b.base) })
	for k, b := range acked {
		if k > 0 {
			if prev := acked[k-1]; prev.base+int64(len(prev.recs)) > b.base {
				t.Errorf("%s/%d: offset %d assigned twice: to a batch of %d acknowledged by node %d at %d and one acknowledged by node %d at %d",
					topic, p, b.base, len(prev.recs), prev.node, prev.base, b.node, b.base)
			}
		}
		for j, want := range b.recs {
			off := b.base + int64(j)
			if off >= int64(len(log)) {
				t.Errorf("%s/%d: batch acknowledged by node %d at %d: offset %d is past the end %d", topic, p, b.node, b.base, off, len(log))
				break
			}
			if err := sameRecord(log[off], want, off); err != nil {
				t.Errorf("%s/%d: batch acknowledged by node %d at %d: %v", topic, p, b.node, b.base, err)
				break
			}
		}
	}
	// Every value is unique to one record sent, acknowledged or not: one
	// seen twice is a batch committed twice.
	seen := map[string]int64{}
	for _, rec := range log {
		if first, dup := seen[string(rec.Value)]; dup {
			t.Errorf("%s/%d: record %.20q at offsets %d and %d: a batch was committed twice", topic, p, rec.Value, first, rec.Offset)
			continue
		}
		seen[string(rec.Value)] = rec.Offset
	}
	t.Logf("%s/%d: %d records, %d acknowledged batches", topic, p, len(log), len(acked))
}

// readAll reads a partition from offset 0 to end.
func readAll(ctx context.Context, n *shale.Node, topic string, p int32, end int64) ([]record.Record, error) {
	var out []record.Record
	for off := int64(0); off < end; {
		res, err := n.Reader.Read(ctx, topic, p, off, 1000, 1<<20, 0)
		if err != nil {
			return nil, fmt.Errorf("read %s/%d at %d: %w", topic, p, off, err)
		}
		if len(res.Records) == 0 {
			return nil, fmt.Errorf("read %s/%d at %d: no records below the end %d", topic, p, off, end)
		}
		out = append(out, res.Records...)
		off += int64(len(res.Records))
	}
	return out, nil
}

// sameRecord reports how got, read at offset off, differs from want.
func sameRecord(got, want record.Record, off int64) error {
	switch {
	case got.Offset != off:
		return fmt.Errorf("record at offset %d says offset %d", off, got.Offset)
	case !bytes.Equal(got.Value, want.Value):
		return fmt.Errorf("offset %d holds value %.24q, want %.24q", off, got.Value, want.Value)
	case !bytes.Equal(got.Key, want.Key) || got.Timestamp != want.Timestamp:
		return fmt.Errorf("offset %d: key %q timestamp %d, want %q %d", off, got.Key, got.Timestamp, want.Key, want.Timestamp)
	case len(got.Headers) != len(want.Headers):
		return fmt.Errorf("offset %d: %d headers, want %d", off, len(got.Headers), len(want.Headers))
	}
	for i, h := range got.Headers {
		if h.Key != want.Headers[i].Key || !bytes.Equal(h.Value, want.Headers[i].Value) {
			return fmt.Errorf("offset %d: header %d is %q=%q, want %q=%q", off, i, h.Key, h.Value, want.Headers[i].Key, want.Headers[i].Value)
		}
	}
	return nil
}
