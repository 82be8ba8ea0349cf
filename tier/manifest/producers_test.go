package manifest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shalelog/shale/tier/tiertest"
)

// clock is an injected commit clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// idem is a pending object of one part of partition 0 of topic t holding
// the given producer batches, each of n records in a row.
func idem(key string, n int64, batches ...ProducerBatch) PendingObject {
	o := pending(key, "t", 0)
	var rows int64
	for i := range batches {
		batches[i].Delta = rows
		rows += seqCount(batches[i].FirstSeq, batches[i].LastSeq)
	}
	rows = max(rows, n)
	o.Parts[0].Count = rows
	o.Parts[0].Batches = Batches{{Delta: 0, Rows: rows, Off: 8, Len: 50, CRC: 7}}
	o.Parts[0].Producers = batches
	return o
}

func pb(id int64, epoch int16, first, last int32) ProducerBatch {
	return ProducerBatch{ID: id, Epoch: epoch, FirstSeq: first, LastSeq: last}
}

// appendOne commits one object and returns its result.
func appendOne(t *testing.T, l *Log, o PendingObject) AppendResult {
	t.Helper()
	res, err := l.Append(context.Background(), []PendingObject{o})
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

func end(l *Log) int64 {
	var e int64
	l.View(func(s *State) { e = s.Topics["t"].Parts[0].End })
	return e
}

// TestProducerIDsInBlocks: ids from two nodes never collide, and a node
// commits once per block, not once per id.
func TestProducerIDsInBlocks(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := openLog(t, s, Options{Node: "a", ProducerIDBlock: 100})
	b := openLog(t, s, Options{Node: "b", ProducerIDBlock: 100})
	seen := map[int64]bool{}
	for i := range 250 {
		for _, l := range []*Log{a, b} {
			id, err := l.ProducerID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if seen[id] {
				t.Fatalf("id %d handed out twice (round %d)", id, i)
			}
			seen[id] = true
		}
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.Seq(); got != 6 {
		t.Fatalf("500 ids in blocks of 100 took %d commits, want 6", got)
	}
	// A restarted node reserves a fresh block: ids of its old block are
	// never handed out again.
	c := openLog(t, s, Options{Node: "a", ProducerIDBlock: 100})
	id, err := c.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id != 600 {
		t.Fatalf("restarted node's first id %d, want 600", id)
	}
}

// TestIdempotentAppend: the commit builder's judgement of producer batches.
func TestIdempotentAppend(t *testing.T) {
	ctx := context.Background()
	l := openLog(t, newStore(t), Options{})
	if _, err := l.CreateTopic(ctx, "t", 1, Retention{}); err != nil {
		t.Fatal(err)
	}
	p1, _ := l.ProducerID(ctx)
	p2, _ := l.ProducerID(ctx)

	// Two batches of one producer in one part, in sequence: both in.
	r := appendOne(t, l, idem("o1", 0, pb(p1, 0, 0, 2), pb(p1, 0, 3, 4)))
	if r.Err[0] != nil || r.Producers[0][0].Base != 0 || r.Producers[0][1].Base != 3 {
		t.Fatalf("two in-sequence batches in one part: %+v", r)
	}
	// The first again: a duplicate with its original offset; nothing
	// committed.
	r = appendOne(t, l, idem("o2", 0, pb(p1, 0, 0, 2)))
	if !r.Producers[0][0].Duplicate || r.Producers[0][0].Base != 0 || !errors.Is(r.Err[0], ErrRetry) || end(l) != 5 {
		t.Fatalf("duplicate: %+v, end %d", r.Producers[0][0], end(l))
	}
	// A duplicate beside a new producer's batch: the part is left out
	// whole; the new batch is to be retried, and then goes in.
	r = appendOne(t, l, idem("o3", 0, pb(p1, 0, 3, 4), pb(p2, 0, 0, 0)))
	if !r.Producers[0][0].Duplicate || r.Producers[0][0].Base != 3 || !errors.Is(r.Producers[0][1].Err, ErrRetry) || end(l) != 5 {
		t.Fatalf("duplicate beside a new batch: %+v, end %d", r.Producers[0], end(l))
	}
	r = appendOne(t, l, idem("o4", 0, pb(p2, 0, 0, 0)))
	if r.Err[0] != nil || r.Producers[0][0].Base != 5 {
		t.Fatalf("retried batch: %+v", r)
	}
	// The same batch twice in one part: neither goes in.
	r = appendOne(t, l, idem("o5", 0, pb(p2, 0, 1, 1), pb(p2, 0, 1, 1)))
	if !errors.Is(r.Producers[0][0].Err, ErrRetry) || !errors.Is(r.Producers[0][1].Err, ErrRetry) || end(l) != 6 {
		t.Fatalf("one batch twice in a part: %+v, end %d", r.Producers[0], end(l))
	}

	for _, tc := range []struct {
		name string
		b    ProducerBatch
		want error
	}{
		{"gap", pb(p1, 0, 6, 6), ErrOutOfOrderSequence},
		{"older than the last five", pb(p1, 0, 1, 2), ErrOutOfOrderSequence},
		{"new epoch not at 0", pb(p1, 1, 5, 5), ErrOutOfOrderSequence},
		{"unknown producer not at 0", pb(p1+5, 0, 3, 3), ErrUnknownProducer},
		{"never allocated", pb(1<<40, 0, 0, 0), ErrUnknownProducer},
	} {
		r := appendOne(t, l, idem("x-"+tc.name, 0, tc.b))
		if !errors.Is(r.Producers[0][0].Err, tc.want) || !errors.Is(r.Err[0], ErrRetry) {
			t.Errorf("%s: %+v, want %v", tc.name, r.Producers[0][0], tc.want)
		}
	}
	// A new epoch from 0 fences the old one.
	if r := appendOne(t, l, idem("o6", 0, pb(p1, 1, 0, 0))); r.Err[0] != nil {
		t.Fatal(r.Err[0])
	}
	if r := appendOne(t, l, idem("o7", 0, pb(p1, 0, 5, 5))); !errors.Is(r.Producers[0][0].Err, ErrProducerFenced) {
		t.Fatalf("stale epoch: %+v", r.Producers[0][0])
	}
	// Only the last five batches are remembered.
	for i := int32(1); i <= 5; i++ {
		if r := appendOne(t, l, idem(fmt.Sprint("o8-", i), 0, pb(p1, 1, i, i))); r.Err[0] != nil {
			t.Fatal(r.Err[0])
		}
	}
	if r := appendOne(t, l, idem("o9", 0, pb(p1, 1, 0, 0))); !errors.Is(r.Producers[0][0].Err, ErrOutOfOrderSequence) {
		t.Fatalf("sixth batch back: %+v", r.Producers[0][0])
	}
	if r := appendOne(t, l, idem("o10", 0, pb(p1, 1, 1, 1))); !r.Producers[0][0].Duplicate {
		t.Fatalf("fifth batch back: %+v", r.Producers[0][0])
	}
	// Sequences wrap from MaxInt32 to 0.
	if got := LastSeq(math.MaxInt32-1, 4); got != 1 {
		t.Fatalf("LastSeq wraps to %d, want 1", got)
	}
	if got := seqCount(math.MaxInt32-1, 1); got != 4 {
		t.Fatalf("seqCount across the wrap %d, want 4", got)
	}
	// A fresh node replaying the log agrees, and judges alike.
	l2 := openLog(t, l.store, Options{})
	if r := appendOne(t, l2, idem("o11", 0, pb(p1, 1, 2, 2))); !r.Producers[0][0].Duplicate || r.Producers[0][0].Base != 8 {
		t.Fatalf("replaying node: %+v", r.Producers[0][0])
	}
	if got, want := stateOf(l2), stateOf(l); !reflect.DeepEqual(got.Topics["t"].Parts[0].Producers, want.Topics["t"].Parts[0].Producers) {
		t.Fatalf("replayed producers differ")
	}
}

// TestProducerStateFromCheckpoint: a node that starts from a checkpoint
// holding producer state answers a duplicate with its original offset.
func TestProducerStateFromCheckpoint(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	l := openLog(t, s, Options{CheckpointEvery: 4})
	if _, err := l.CreateTopic(ctx, "t", 1, Retention{}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.ProducerID(ctx)
	for i := int32(0); i < 2; i++ {
		if r := appendOne(t, l, idem(fmt.Sprint("o", i), 0, pb(p, 0, 2*i, 2*i+1))); r.Err[0] != nil {
			t.Fatal(r.Err[0])
		}
	}
	waitCheckpoint(l)
	if data, _, err := s.Get(ctx, checkpointKey(4), 0, -1); err != nil || !strings.HasPrefix(string(data), `{"v":2,`) {
		t.Fatalf("checkpoint with producers: %.20s, %v; want version 2", data, err)
	}
	l2 := openLog(t, s, Options{})
	if l2.Seq() != 4 {
		t.Fatalf("opened at %d", l2.Seq())
	}
	st := stateOf(l2)
	if ps := st.Topics["t"].Parts[0].Producers[p]; ps == nil || len(ps.Batches) != 2 {
		t.Fatalf("checkpoint producers: %+v", st.Topics["t"].Parts[0].Producers)
	}
	if r := appendOne(t, l2, idem("o9", 0, pb(p, 0, 2, 3))); !r.Producers[0][0].Duplicate || r.Producers[0][0].Base != 2 {
		t.Fatalf("duplicate after a checkpoint: %+v", r.Producers[0][0])
	}
	if r := appendOne(t, l2, idem("o10", 0, pb(p, 0, 4, 4))); r.Err[0] != nil || r.Producers[0][0].Base != 4 {
		t.Fatalf("next batch after a checkpoint: %+v", r)
	}
}

// TestProducerExpiry: a producer idle for longer than the expiry (by the
// commits' clock) is unknown unless it starts again at 0; the clock never
// runs backwards, so a node with a slow clock cannot revive it.
func TestProducerExpiry(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.UnixMilli(1_000_000_000_000)}
	s := newStore(t)
	l := openLog(t, s, Options{Now: c.now})
	if _, err := l.CreateTopic(ctx, "t", 1, Retention{}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.ProducerID(ctx)
	q, _ := l.ProducerID(ctx)
	appendOne(t, l, idem("o1", 0, pb(p, 0, 0, 0)))
	appendOne(t, l, idem("o2", 0, pb(q, 0, 0, 0)))
	c.add(DefaultProducerExpiry*time.Millisecond - time.Millisecond)
	appendOne(t, l, idem("o3", 0, pb(q, 0, 1, 1))) // q stays live
	c.add(2 * time.Millisecond)
	// This commit's time expires p (pruned by the commit itself).
	if r := appendOne(t, l, idem("o4", 0, pb(p, 0, 1, 1))); !errors.Is(r.Producers[0][0].Err, ErrUnknownProducer) {
		t.Fatalf("expired producer: %+v", r.Producers[0][0])
	}
	appendOne(t, l, idem("o5", 0, pb(q, 0, 2, 2)))
	if n := l.ProducerEntries(); n != 1 {
		t.Fatalf("%d producer entries after expiry, want 1", n)
	}
	// A node whose clock is behind still judges by the state's clock.
	slow := &clock{t: time.UnixMilli(1_000_000_000_000)}
	l2 := openLog(t, s, Options{Now: slow.now})
	if r := appendOne(t, l2, idem("o6", 0, pb(p, 0, 1, 1))); !errors.Is(r.Producers[0][0].Err, ErrUnknownProducer) {
		t.Fatalf("expired producer on a slow node: %+v", r.Producers[0][0])
	}
	if r := appendOne(t, l2, idem("o7", 0, pb(p, 0, 0, 0))); r.Err[0] != nil {
		t.Fatalf("expired producer starting at 0: %+v", r)
	}
}

// TestProducerLimit: beyond the cluster's limit the oldest entries are
// evicted, the same on every node.
func TestProducerLimit(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	l := openLog(t, s, Options{})
	if _, err := l.CreateTopic(ctx, "t", 1, Retention{}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetProducerLimits(ctx, ProducerLimits{Max: 3}); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for i := range 4 {
		id, _ := l.ProducerID(ctx)
		ids = append(ids, id)
		appendOne(t, l, idem(fmt.Sprint("o", i), 0, pb(id, 0, 0, 0)))
	}
	if n := l.ProducerEntries(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	if r := appendOne(t, l, idem("o9", 0, pb(ids[0], 0, 1, 1))); !errors.Is(r.Producers[0][0].Err, ErrUnknownProducer) {
		t.Fatalf("evicted producer: %+v", r.Producers[0][0])
	}
	if r := appendOne(t, l, idem("o10", 0, pb(ids[1], 0, 1, 1))); r.Err[0] != nil {
		t.Fatalf("kept producer: %+v", r)
	}
	l2 := openLog(t, s, Options{})
	if a, b := stateOf(l2), stateOf(l); !reflect.DeepEqual(a.Topics["t"].Parts[0].Producers, b.Topics["t"].Parts[0].Producers) {
		t.Fatalf("replayed producers differ")
	}
	if err := l.SetProducerLimits(ctx, ProducerLimits{Max: -1}); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("negative limit: %v", err)
	}
}

// TestInvalidProducerRecordIsSkipped: a record whose producer fields do not
// fit the state is skipped whole by every node, like any invalid record.
func TestInvalidProducerRecordIsSkipped(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  func(c *Commit)
	}{
		{"duplicate batch", func(c *Commit) { c.Ops[0].Append.Parts[0].Producers[0] = pb(0, 0, 0, 2) }},
		{"sequence gap", func(c *Commit) { c.Ops[0].Append.Parts[0].Producers[0] = pb(0, 0, 4, 6) }},
		{"negative epoch", func(c *Commit) { c.Ops[0].Append.Parts[0].Producers[0] = pb(0, -1, 3, 5) }},
		{"unknown producer not at 0", func(c *Commit) { c.Ops[0].Append.Parts[0].Producers[0] = pb(1, 0, 3, 5) }},
		{"never allocated", func(c *Commit) { c.Ops[0].Append.Parts[0].Producers[0] = pb(5000, 0, 0, 2) }},
		{"negative id", func(c *Commit) { c.Ops[0].Append.Parts[0].Producers[0] = pb(-1, 0, 0, 2) }},
		{"batch past the part's rows", func(c *Commit) { c.Ops[0].Append.Parts[0].Producers[0] = pb(0, 0, 3, 6) }},
		{"batches out of row order", func(c *Commit) {
			c.Ops[0].Append.Parts[0].Producers = []ProducerBatch{{ID: 1, FirstSeq: 0, LastSeq: 0, Delta: 1}, {ID: 2, FirstSeq: 0, LastSeq: 0, Delta: 0}}
		}},
		{"producer_ids not at the next id", func(c *Commit) { c.Ops = []Op{{ProducerIDs: &ProducerIDsOp{First: 5, Count: 10}}} }},
		{"producer_ids of no ids", func(c *Commit) { c.Ops = []Op{{ProducerIDs: &ProducerIDsOp{First: 1000, Count: 0}}} }},
		{"producer_ids too many", func(c *Commit) { c.Ops = []Op{{ProducerIDs: &ProducerIDsOp{First: 1000, Count: 1 << 40}}} }},
		{"negative producer limits", func(c *Commit) { c.Ops = []Op{{ProducerLimits: &ProducerLimits{Max: -1}}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t)
			a := openLog(t, s, Options{})
			if _, err := a.CreateTopic(ctx, "t", 1, Retention{}); err != nil {
				t.Fatal(err)
			}
			if _, err := a.ProducerID(ctx); err != nil {
				t.Fatal(err)
			}
			if r := appendOne(t, a, idem("o1", 0, pb(0, 0, 0, 2))); r.Err[0] != nil {
				t.Fatal(r.Err[0])
			}
			before := stateOf(a)
			o := idem("o2", 0, pb(0, 0, 3, 5))
			part := AppendPart{Topic: "t", TopicID: before.Topics["t"].ID, Base: 3, Span: o.Parts[0].Span, Producers: o.Parts[0].Producers}
			c := &Commit{Version: 2, Seq: 4, ID: "x", TimeMs: before.ClockMs, Ops: []Op{{Append: &AppendOp{Object: "o2", Size: 100, Parts: []AppendPart{part}}}}}
			if err := before.checkCommit(c); err != nil {
				t.Fatalf("the valid template fails: %v", err)
			}
			tc.bad(c)
			data, _ := json.Marshal(c)
			putRaw(t, s, 4, data)
			if err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			after := stateOf(a)
			before.Seq = 4
			if a.Skipped() != 1 || !reflect.DeepEqual(before, after) {
				t.Fatalf("skipped %d; state after:\n%+v\nwant:\n%+v", a.Skipped(), after, before)
			}
			b := openLog(t, s, Options{})
			if b.Skipped() != 1 || !reflect.DeepEqual(stateOf(a), stateOf(b)) {
				t.Fatalf("a starting node skipped %d records and has another state", b.Skipped())
			}
		})
	}
}

// TestProducerEntryBytes: the checkpoint bytes of one producer entry with
// five batches of large numbers, the figure docs/format/manifest.md gives.
func TestProducerEntryBytes(t *testing.T) {
	ps := &ProducerState{Epoch: math.MaxInt16, LastMs: 1795673581267, Commit: 1 << 40}
	for i := range int32(producerBatches) {
		first := math.MaxInt32 - 1000 + 200*i
		ps.Batches = append(ps.Batches, SeqBatch{FirstSeq: first, LastSeq: first + 199, Base: 1<<50 + int64(200*i)})
	}
	b, err := json.Marshal(map[int64]*ProducerState{1 << 50: ps})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes: %s", len(b), b)
	if len(b) > 300 {
		t.Fatalf("a producer entry takes %d bytes, docs say at most 300", len(b))
	}
}

// TestProducerStateIsDeterministic: random producers, clock jumps, limits
// and topic deletions; the state of the node that wrote the log, of a node
// starting from its checkpoints, and of a node replaying the log alone
// are the same.
func TestProducerStateIsDeterministic(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.UnixMilli(1_000_000_000_000)}
	s := tiertest.NewMemStore()
	l := openLog(t, s, Options{Now: c.now, CheckpointEvery: 7, ProducerIDBlock: 20})
	rng := rand.New(rand.NewPCG(1, 2))
	if err := l.SetProducerLimits(ctx, ProducerLimits{ExpiryMs: 60_000, Max: 12}); err != nil {
		t.Fatal(err)
	}
	seqs := map[[2]int64]int32{} // producer, partition: next sequence
	var ids []int64
	forgotten := 0
	for i := range 200 {
		switch k := rng.IntN(20); {
		case k == 0:
			if _, err := l.CreateTopic(ctx, fmt.Sprint("u", i), 2, Retention{}); err != nil {
				t.Fatal(err)
			}
		case k == 1:
			for _, tp := range l.Topics() {
				if tp.Name != "t" {
					if err := l.DeleteTopic(ctx, tp.Name); err != nil {
						t.Fatal(err)
					}
					break
				}
			}
		case k < 4 || len(ids) == 0:
			id, err := l.ProducerID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		default:
			if i == 0 {
				if _, err := l.CreateTopic(ctx, "t", 3, Retention{}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := l.Topic(ctx, "t"); err != nil {
				if _, err := l.CreateTopic(ctx, "t", 3, Retention{}); err != nil {
					t.Fatal(err)
				}
			}
			id := ids[rng.IntN(len(ids))]
			part := int32(rng.IntN(3))
			first := seqs[[2]int64{id, int64(part)}]
			n := int32(1 + rng.IntN(3))
			o := pending(fmt.Sprint("o", i), "t", part)
			o.Parts[0].Producers = []ProducerBatch{{ID: id, FirstSeq: first, LastSeq: first + n - 1}}
			o.Parts[0].Count = int64(n)
			o.Parts[0].Batches = Batches{{Delta: 0, Rows: int64(n), Off: 8, Len: 50, CRC: 7}}
			res, err := l.Append(ctx, []PendingObject{o})
			if err != nil {
				t.Fatal(err)
			}
			switch err := res[0].Err[0]; {
			case err == nil:
				seqs[[2]int64{id, int64(part)}] = first + n
			case errors.Is(res[0].Producers[0][0].Err, ErrUnknownProducer):
				seqs[[2]int64{id, int64(part)}] = 0 // expired or evicted: start again
				forgotten++
			default:
				t.Fatalf("append %d: %v", i, err)
			}
		}
		c.add(time.Duration(rng.IntN(10_000)) * time.Millisecond)
	}
	waitCheckpoint(l)
	replay := tiertest.NewMemStore()
	for seq := int64(1); seq <= l.Seq(); seq++ {
		data, _, err := s.Get(ctx, LogKey(seq), 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		putRaw(t, replay, seq, data)
	}
	want := stateOf(l)
	for name, st := range map[string]*State{"from checkpoints": stateOf(openLog(t, s, Options{})), "replaying": stateOf(openLog(t, replay, Options{}))} {
		if !reflect.DeepEqual(st, want) {
			t.Fatalf("%s: the state differs from the writer's", name)
		}
	}
	if forgotten == 0 {
		t.Fatal("no producer was ever expired or evicted")
	}
	if n := l.ProducerEntries(); n == 0 || n > 12 {
		t.Fatalf("%d producer entries, want 1 to 12", n)
	}
}

// TestVersion1IgnoresProducers: a node must judge a version 1 record as a
// node that knows nothing of producers does: producer batches in its parts
// are ignored, a producer_ids operation is no operation (the record is
// invalid). The writer writes version 2 only when it uses producers.
func TestVersion1IgnoresProducers(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := openLog(t, s, Options{})
	tp, err := a.CreateTopic(ctx, "t", 1, Retention{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ProducerID(ctx); err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[int64]int{1: 1, 2: 2} {
		data, _, err := s.Get(ctx, LogKey(seq), 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		var c Commit
		if err := json.Unmarshal(data, &c); err != nil || c.Version != want {
			t.Fatalf("record %d is version %d, want %d (%v)", seq, c.Version, want, err)
		}
	}
	o := idem("o", 0, pb(0, 0, 5, 7)) // out of sequence, if it counted
	part := AppendPart{Topic: "t", TopicID: tp.ID, Base: 0, Span: o.Parts[0].Span, Producers: o.Parts[0].Producers}
	data, _ := json.Marshal(Commit{Version: 1, Seq: 3, Ops: []Op{{Append: &AppendOp{Object: "o", Size: 100, Parts: []AppendPart{part}}}}})
	putRaw(t, s, 3, data)
	data, _ = json.Marshal(Commit{Version: 1, Seq: 4, Ops: []Op{{ProducerIDs: &ProducerIDsOp{First: 1000, Count: 10}}}})
	putRaw(t, s, 4, data)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	st := stateOf(a)
	if a.Skipped() != 1 || st.Topics["t"].Parts[0].End != 3 || st.Topics["t"].Parts[0].Producers != nil || st.NextProducerID != 1000 {
		t.Fatalf("skipped %d, end %d, producers %v, next id %d; want 1, 3, none, 1000", a.Skipped(), st.Topics["t"].Parts[0].End, st.Topics["t"].Parts[0].Producers, st.NextProducerID)
	}
}
