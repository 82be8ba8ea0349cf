package manifest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/fs"
	"github.com/shalelog/shale/tier/object"
	"github.com/shalelog/shale/tier/tiertest"
)

func newStore(t *testing.T) tier.Store {
	t.Helper()
	s, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openLog(t *testing.T, s tier.Store, opts Options) *Log {
	t.Helper()
	l, err := Open(context.Background(), s, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func pending(key, topic string, parts ...int32) PendingObject {
	o := PendingObject{Key: key, Size: 100}
	for _, p := range parts {
		o.Parts = append(o.Parts, PendingPart{Topic: topic, Partition: p, Span: Span{Count: 3, MinTs: 1, MaxTs: 2, Bytes: 30,
			Batches: Batches{{Delta: 0, Rows: 3, Off: 8, Len: 50, CRC: 7}}}})
	}
	return o
}

// TestConcurrentWritersAssignEachOffsetOnce races several nodes appending to
// the same partitions of one bucket: every offset must be assigned exactly
// once, every node must reach the same state, and a fresh node replaying the
// log must too.
func TestConcurrentWritersAssignEachOffsetOnce(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	const nodes, commits = 4, 25
	logs := make([]*Log, nodes)
	for i := range logs {
		logs[i] = openLog(t, s, Options{Node: fmt.Sprint("n", i), CheckpointEvery: 16})
	}
	if _, err := logs[0].CreateTopic(ctx, "t", 2, Retention{Ms: -1, Bytes: -1}); err != nil {
		t.Fatal(err)
	}
	for _, l := range logs {
		if err := l.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	got := map[[2]int64]string{} // (partition, offset) -> object
	var wg sync.WaitGroup
	for i, l := range logs {
		wg.Go(func() {
			for j := range commits {
				key := fmt.Sprintf("obj-%d-%d", i, j)
				res, err := l.Append(ctx, []PendingObject{pending(key, "t", 0, 1)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for k, p := range []int64{0, 1} {
					if res[0].Err[k] != nil {
						t.Error(res[0].Err[k])
						continue
					}
					for o := res[0].Base[k]; o < res[0].Base[k]+3; o++ {
						if prev, dup := got[[2]int64{p, o}]; dup {
							t.Errorf("offset %d of partition %d assigned to %s and %s", o, p, prev, key)
						}
						got[[2]int64{p, o}] = key
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	want := int64(nodes * commits * 3)
	for p := range int64(2) {
		for o := range want {
			if _, ok := got[[2]int64{p, o}]; !ok {
				t.Fatalf("offset %d of partition %d was never assigned", o, p)
			}
		}
	}
	// Every node, and a new one starting from a checkpoint, agrees.
	fresh := openLog(t, s, Options{})
	var ref *State
	for i, l := range append(logs, fresh) {
		if err := l.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		var st State
		l.View(func(s *State) { st = *s })
		if ref == nil {
			ref = &st
			continue
		}
		if !reflect.DeepEqual(ref, &st) {
			t.Fatalf("node %d's state differs from node 0's", i)
		}
	}
	for p, part := range ref.Topics["t"].Parts {
		if part.End != want {
			t.Fatalf("partition %d ends at %d, want %d", p, part.End, want)
		}
		for _, e := range part.Entries {
			if got[[2]int64{int64(p), e.Base}] != e.Object {
				t.Fatalf("index says offset %d is in %s, the writer was told %s", e.Base, e.Object, got[[2]int64{int64(p), e.Base}])
			}
		}
	}
	if _, err := s.Head(ctx, latestKey); err != nil {
		t.Fatalf("no checkpoint written after %d commits: %v", nodes*commits, err)
	}
}

var errNetwork = errors.New("connection reset")

// TestAmbiguousCommitIsResolved: a commit whose write landed but reported a
// failure must count as committed once, not be retried at the next number.
func TestAmbiguousCommitIsResolved(t *testing.T) {
	ctx := context.Background()
	fs := tiertest.NewFaultStore(newStore(t), 1)
	l := openLog(t, fs, Options{})
	if _, err := l.CreateTopic(ctx, "t", 1, Retention{}); err != nil {
		t.Fatal(err)
	}
	fs.Set(tiertest.Fault{Kind: tiertest.Ambiguous, Ops: tiertest.OpPutIfAbsent, Rate: 1, Times: 1})
	res, err := l.Append(ctx, []PendingObject{pending("a", "t", 0)})
	if err != nil || res[0].Base[0] != 0 {
		t.Fatalf("append = %v, %v; want base 0", res, err)
	}
	fs.Set(tiertest.Fault{Kind: tiertest.Fail, Ops: tiertest.OpPutIfAbsent, Rate: 1, Times: 2})
	res, err = l.Append(ctx, []PendingObject{pending("b", "t", 0)})
	if err != nil || res[0].Base[0] != 3 {
		t.Fatalf("append = %v, %v; want base 3", res, err)
	}
	fresh := openLog(t, fs.Store, Options{})
	_, end, entries, err := fresh.Locate(ctx, "t", 0, 0, 10)
	if err != nil || end != 6 || len(entries) != 2 || entries[0].Object != "a" || entries[1].Object != "b" {
		t.Fatalf("replayed partition: end %d, entries %+v, err %v; want a then b, end 6", end, entries, err)
	}
}

func TestTopicLifecycle(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a, b := openLog(t, s, Options{}), openLog(t, s, Options{})
	for _, tc := range []struct {
		name  string
		parts int32
	}{{"", 1}, {"bad/name", 1}, {"..", 1}, {"ok", 0}, {"ok", MaxPartitions + 1}} {
		if _, err := a.CreateTopic(ctx, tc.name, tc.parts, Retention{}); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("create %q with %d partitions: err %v, want ErrInvalidTopic", tc.name, tc.parts, err)
		}
	}
	if _, err := a.CreateTopic(ctx, "x", 3, Retention{Ms: 1000, Bytes: -1}); err != nil {
		t.Fatal(err)
	}
	// b has not seen x yet; its create must still lose.
	if _, err := b.CreateTopic(ctx, "x", 1, Retention{}); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("second create: err %v, want ErrTopicExists", err)
	}
	if tp, err := b.Topic(ctx, "x"); err != nil || tp.Partitions != 3 || tp.Retention.Ms != 1000 {
		t.Fatalf("b sees topic %+v, %v", tp, err)
	}
	if err := b.DeleteTopic(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	// a appends to the deleted topic: the part is refused, not committed.
	res, err := a.Append(ctx, []PendingObject{pending("o", "x", 0)})
	if err != nil || !errors.Is(res[0].Err[0], ErrUnknownTopic) {
		t.Fatalf("append to deleted topic: %v, %v; want ErrUnknownTopic", res, err)
	}
	if err := a.DeleteTopic(ctx, "x"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestBatchesJSON(t *testing.T) {
	in := Batches{{Delta: 1, Rows: 2, Off: 3, Len: 4, CRC: 0xffffffff}}
	b, err := in.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var out Batches
	if err := out.UnmarshalJSON(b); err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip %s: %v %v", b, out, err)
	}
	_ = object.Batch{}
}

// TestIndexPagesBoundStartup: old index entries are sealed into pages at
// checkpoints, so a node starts by reading the pointer, one checkpoint and
// the log after it, never the pages or the whole log; and reads anywhere
// in the history still find their entries.
func TestIndexPagesBoundStartup(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	l := openLog(t, s, Options{CheckpointEvery: 8, PageEntries: 4})
	if _, err := l.CreateTopic(ctx, "t", 1, Retention{}); err != nil {
		t.Fatal(err)
	}
	const commits = 100
	for i := range commits {
		o := pending(fmt.Sprint("obj-", i), "t", 0)
		o.Parts[0].MaxTs = int64(1000 + i)
		if _, err := l.Append(ctx, []PendingObject{o}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close() // waits for checkpoint uploads
	_, _, want, _ := l.Locate(ctx, "t", 0, 0, 1)
	cs := tiertest.NewCountingStore(s)
	fresh := openLog(t, cs, Options{CheckpointEvery: 8, PageEntries: 4})
	if n := cs.Counts(indexPrefix).N(tiertest.OpGet); n != 0 {
		t.Fatalf("open read %d index objects", n)
	}
	if n := cs.Counts(logPrefix).N(tiertest.OpGet); n > 16 {
		t.Fatalf("open read %d log records; the newest checkpoint is at most 8 behind", n)
	}
	var pages, tail int
	fresh.View(func(s *State) { p := s.Topics["t"].Parts[0]; pages, tail = len(p.Pages), len(p.Entries) })
	if pages < 20 || tail > 16 {
		t.Fatalf("after open: %d pages, %d tail entries; want most entries paged", pages, tail)
	}
	_, infos, err := fresh.Describe("t")
	if err != nil || infos[0].Objects != commits || infos[0].End != 3*commits {
		t.Fatalf("describe: %+v %v", infos, err)
	}
	for off := int64(0); off < 3*commits; off++ {
		_, _, es, err := fresh.Locate(ctx, "t", 0, off, 1)
		if err != nil || len(es) != 1 || off < es[0].Base || off >= es[0].End() || es[0].Object != fmt.Sprint("obj-", off/3) {
			t.Fatalf("locate %d: %+v %v", off, es, err)
		}
	}
	if len(want) != 1 || want[0].Object != "obj-0" {
		t.Fatalf("original node lost its first entry: %+v", want)
	}
	for _, tc := range []struct{ ts, off int64 }{{0, 0}, {1000, 0}, {1050, 150}, {1099, 297}, {5000, 300}} {
		got, err := fresh.FindTime(ctx, "t", 0, tc.ts)
		if err != nil || got != tc.off {
			t.Fatalf("FindTime(%d) = %d, %v; want %d", tc.ts, got, err, tc.off)
		}
	}
}

// inFlightStore makes the next conditional write slow to land while
// reporting a network error, and a retry meanwhile see a conflict, as S3
// answers 409 while a competing conditional write is in progress.
type inFlightStore struct {
	tier.Store
	armed  atomic.Bool
	calls  atomic.Int32
	landed chan struct{}
}

func (s *inFlightStore) PutIfAbsent(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	if !s.armed.Load() {
		return s.Store.PutIfAbsent(ctx, key, data)
	}
	switch s.calls.Add(1) {
	case 1:
		go func() {
			time.Sleep(60 * time.Millisecond)
			s.Store.PutIfAbsent(context.Background(), key, data)
			close(s.landed)
		}()
		return tier.Attrs{}, errNetwork
	case 2:
		return tier.Attrs{}, fmt.Errorf("put if absent %s: %w", key, tier.ErrConflict)
	}
	return s.Store.PutIfAbsent(ctx, key, data)
}

// TestInFlightCommitIsNotCommittedTwice: a commit whose first write is
// still in flight when its retry conflicts must wait for the record to be
// readable and find it is its own, not commit the same object again at the
// next number.
func TestInFlightCommitIsNotCommittedTwice(t *testing.T) {
	ctx := context.Background()
	s := &inFlightStore{Store: newStore(t), landed: make(chan struct{})}
	l := openLog(t, s, Options{})
	if _, err := l.CreateTopic(ctx, "t", 1, Retention{}); err != nil {
		t.Fatal(err)
	}
	s.armed.Store(true)
	res, err := l.Append(ctx, []PendingObject{pending("a", "t", 0)})
	if err != nil || res[0].Base[0] != 0 {
		t.Fatalf("append = %+v, %v; want base 0", res, err)
	}
	<-s.landed
	fresh := openLog(t, s.Store, Options{})
	_, end, entries, err := fresh.Locate(ctx, "t", 0, 0, 10)
	if err != nil || end != 3 || len(entries) != 1 {
		t.Fatalf("replayed: end %d, entries %+v, %v; want object a once", end, entries, err)
	}
}

// TestTrimSealedChecksIncarnation: a page sealed for a topic that was then
// deleted and re-created must not replace the new topic's entries.
func TestTrimSealedChecksIncarnation(t *testing.T) {
	entries := func(obj string, n int) []Entry {
		var es []Entry
		for i := range n {
			es = append(es, Entry{Object: fmt.Sprint(obj, i), Base: int64(3 * i), Span: Span{Count: 3}})
		}
		return es
	}
	old := &State{Topics: map[string]*TopicState{"t": {Topic: Topic{Name: "t", ID: "old", Partitions: 1}, Parts: []*Partition{{Entries: entries("old-", 6)}}}}}
	_, pages := snapshotSealed(old, 4)
	if len(pages) != 1 {
		t.Fatalf("sealed %d pages, want 1", len(pages))
	}
	recreated := &State{Topics: map[string]*TopicState{"t": {Topic: Topic{Name: "t", ID: "new", Partitions: 1}, Parts: []*Partition{{Entries: entries("new-", 6)}}}}}
	trimSealed(recreated, pages)
	if p := recreated.Topics["t"].Parts[0]; len(p.Pages) != 0 || len(p.Entries) != 6 {
		t.Fatalf("the re-created topic was trimmed by the old one's page: %d pages, %d entries", len(p.Pages), len(p.Entries))
	}
	trimSealed(old, pages)
	if p := old.Topics["t"].Parts[0]; len(p.Pages) != 1 || len(p.Entries) != 2 || p.Entries[0].Object != "old-4" {
		t.Fatalf("the sealed topic was not trimmed: %+v", p)
	}
}

// TestOpenCostIndependentOfHistory: a node opening a bucket whose
// partition has 200,000 committed objects makes the same requests as one
// with 10 (pointer, checkpoint, one log probe) and reads a checkpoint that
// grows by one page reference per 1024 objects, not by the objects.
func TestOpenCostIndependentOfHistory(t *testing.T) {
	ctx := context.Background()
	open := func(objects int) (gets, bytes int64) {
		s := newStore(t)
		st := newState()
		st.Seq = 1
		p := &Partition{}
		for i := range objects {
			p.Entries = append(p.Entries, Entry{Object: fmt.Sprintf("data/%013d-n-%016x.arrow", i, i), ObjectSize: 16 << 20, Base: int64(i) * 100,
				Span: Span{Count: 100, MinTs: int64(i), MaxTs: int64(i), Bytes: 1 << 20, Batches: Batches{{Rows: 100, Off: 4096, Len: 1 << 20, CRC: 1}}}})
		}
		p.End = int64(objects) * 100
		st.Topics["t"] = &TopicState{Topic: Topic{Name: "t", ID: "id", Partitions: 1}, Parts: []*Partition{p}}
		w := &Log{store: s, opts: Options{PageEntries: 1024, StoreTimeout: time.Minute}}
		snap, pages := snapshotSealed(st, 1024)
		if err := w.writeCheckpoint(ctx, snap, pages); err != nil {
			t.Fatal(err)
		}
		cs := tiertest.NewCountingStore(s)
		l := openLog(t, cs, Options{})
		// And a read deep in history still finds its object (one page GET).
		_, _, es, err := l.Locate(ctx, "t", 0, 5*100, 1)
		if err != nil || len(es) != 1 || es[0].Base != 500 {
			t.Fatalf("locate offset 500 among %d objects: %+v %v", objects, es, err)
		}
		return cs.Counts("").N(tiertest.OpGet), cs.Counts("").GotBytes
	}
	smallGets, smallBytes := open(10)
	bigGets, bigBytes := open(200_000)
	t.Logf("open + one deep read: 10 objects: %d GETs, %d bytes; 200000 objects: %d GETs, %d bytes", smallGets, smallBytes, bigGets, bigBytes)
	if bigGets != smallGets+1 { // the deep read's page
		t.Fatalf("GETs: %d for 200000 objects, %d for 10", bigGets, smallGets)
	}
	// The big open reads 195 page references, a tail of fewer than 1024
	// entries (a constant: the checkpoint keeps less than a page's worth
	// unsealed) and the one page the deep read needs.
	if bigBytes > smallBytes+3*1024*300+200*200 {
		t.Fatalf("read %d bytes for 200000 objects, %d for 10", bigBytes, smallBytes)
	}
}
