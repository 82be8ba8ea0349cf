package manifest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/tiertest"
)

// putRaw writes data as commit record seq, as a buggy or hostile writer
// would.
func putRaw(t *testing.T, s tier.Store, seq int64, data []byte) {
	t.Helper()
	if _, err := s.PutIfAbsent(context.Background(), LogKey(seq), data); err != nil {
		t.Fatal(err)
	}
}

func stateOf(l *Log) *State {
	var st *State
	l.View(func(s *State) {
		b, _ := json.Marshal(s)
		st = &State{}
		_ = json.Unmarshal(b, st)
	})
	return st
}

// TestInvalidCommitIsSkipped: a commit record that does not decode or does
// not fit the state is skipped whole, by a running node and by a node
// starting up alike: its number is used up, none of its operations is
// applied, the node does not panic, and commits after it work.
func TestInvalidCommitIsSkipped(t *testing.T) {
	valid := func(st *State) *Commit {
		id := st.Topics["t"].ID
		span := Span{Count: 3, MinTs: 1, MaxTs: 2, Bytes: 30, Batches: Batches{{Delta: 0, Rows: 3, Off: 8, Len: 50, CRC: 7}}}
		return &Commit{Version: 1, Seq: 3, ID: "x", Ops: []Op{{Append: &AppendOp{Object: "o2", Size: 100, Parts: []AppendPart{
			{Topic: "t", TopicID: id, Partition: 0, Base: 3, Span: span},
			{Topic: "t", TopicID: id, Partition: 1, Base: 3, Span: span},
		}}}}}
	}
	for _, tc := range []struct {
		name string
		bad  func(c *Commit) []byte // changes a valid commit; returns raw bytes to write instead, or nil
	}{
		{"create with -1 partitions", func(c *Commit) []byte {
			c.Ops = []Op{{CreateTopic: &Topic{Name: "u", ID: "u1", Partitions: -1}}}
			return nil
		}},
		{"create with too many partitions", func(c *Commit) []byte {
			c.Ops = []Op{{CreateTopic: &Topic{Name: "u", ID: "u1", Partitions: MaxPartitions + 1}}}
			return nil
		}},
		{"create with a bad name", func(c *Commit) []byte {
			c.Ops = []Op{{CreateTopic: &Topic{Name: "a/b", ID: "u1", Partitions: 1}}}
			return nil
		}},
		{"create without id", func(c *Commit) []byte { c.Ops = []Op{{CreateTopic: &Topic{Name: "u", Partitions: 1}}}; return nil }},
		{"create of an existing name", func(c *Commit) []byte {
			c.Ops = []Op{{CreateTopic: &Topic{Name: "t", ID: "t2", Partitions: 1}}}
			return nil
		}},
		{"create twice in one commit", func(c *Commit) []byte {
			op := Op{CreateTopic: &Topic{Name: "u", ID: "u1", Partitions: 1}}
			c.Ops = []Op{op, op}
			return nil
		}},
		{"delete of another incarnation", func(c *Commit) []byte {
			c.Ops = []Op{{DeleteTopic: &TopicRef{Name: "t", ID: "old"}}}
			return nil
		}},
		{"unknown topic id", func(c *Commit) []byte { c.Ops[0].Append.Parts[0].TopicID = "nope"; return nil }},
		{"unknown topic", func(c *Commit) []byte { c.Ops[0].Append.Parts[0].Topic = "nope"; return nil }},
		{"partition past the end", func(c *Commit) []byte { c.Ops[0].Append.Parts[1].Partition = 2; return nil }},
		{"negative partition", func(c *Commit) []byte { c.Ops[0].Append.Parts[1].Partition = -1; return nil }},
		{"base is not the end", func(c *Commit) []byte { c.Ops[0].Append.Parts[1].Base = 4; return nil }},
		{"base before the end", func(c *Commit) []byte { c.Ops[0].Append.Parts[1].Base = 0; return nil }},
		{"negative count", func(c *Commit) []byte { c.Ops[0].Append.Parts[1].Count = -3; return nil }},
		{"zero count", func(c *Commit) []byte { c.Ops[0].Append.Parts[1].Count = 0; return nil }},
		{"batches short of the count", func(c *Commit) []byte { c.Ops[0].Append.Parts[1].Batches[0].Rows = 2; return nil }},
		{"batch outside the object", func(c *Commit) []byte {
			c.Ops[0].Append.Parts[1].Batches = Batches{{Delta: 0, Rows: 3, Off: 90, Len: 50}}
			return nil
		}},
		{"batches with a gap", func(c *Commit) []byte {
			c.Ops[0].Append.Parts[1].Batches = Batches{{Delta: 0, Rows: 1, Off: 8, Len: 5}, {Delta: 2, Rows: 2, Off: 13, Len: 5}}
			return nil
		}},
		{"no batches", func(c *Commit) []byte { c.Ops[0].Append.Parts[1].Batches = nil; return nil }},
		{"min_ts after max_ts", func(c *Commit) []byte { c.Ops[0].Append.Parts[1].MinTs = 5; return nil }},
		{"count overflows the offset", func(c *Commit) []byte {
			p := &c.Ops[0].Append.Parts[1]
			p.Count = 1<<63 - 1
			p.Batches = Batches{{Delta: 0, Rows: p.Count, Off: 8, Len: 50}}
			return nil
		}},
		{"partition twice in one object", func(c *Commit) []byte {
			a := c.Ops[0].Append
			a.Parts[1] = a.Parts[0]
			a.Parts[1].Base = 6
			return nil
		}},
		{"object twice in one commit", func(c *Commit) []byte {
			a := *c.Ops[0].Append
			a.Parts = []AppendPart{a.Parts[0]}
			a.Parts[0].Base = 6
			c.Ops = append(c.Ops, Op{Append: &a})
			return nil
		}},
		{"no parts", func(c *Commit) []byte { c.Ops[0].Append.Parts = nil; return nil }},
		{"negative object size", func(c *Commit) []byte { c.Ops[0].Append.Size = -1; return nil }},
		{"no object key", func(c *Commit) []byte { c.Ops[0].Append.Object = ""; return nil }},
		{"empty operation", func(c *Commit) []byte { c.Ops = append(c.Ops, Op{}); return nil }},
		{"two operations in one element", func(c *Commit) []byte {
			c.Ops[0].DeleteTopic = &TopicRef{Name: "t", ID: c.Ops[0].Append.Parts[0].TopicID}
			return nil
		}},
		{"version 0", func(c *Commit) []byte { c.Version = 0; return nil }},
		{"wrong number", func(c *Commit) []byte { c.Seq = 7; return nil }},
		{"not JSON", func(c *Commit) []byte { return []byte("{\"v\":1,\"seq\":3,\"ops\":[") }},
		{"batches of the wrong shape", func(c *Commit) []byte {
			b, _ := json.Marshal(c)
			return []byte(strings.Replace(string(b), `"batches":[[0,3,8,50,7]]`, `"batches":{"a":1}`, 1))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t)
			a := openLog(t, s, Options{})
			if _, err := a.CreateTopic(ctx, "t", 2, Retention{}); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Append(ctx, []PendingObject{pending("o1", "t", 0, 1)}); err != nil {
				t.Fatal(err)
			}
			before := stateOf(a)
			c := valid(before)
			if err := before.checkCommit(c); err != nil {
				t.Fatalf("the valid template fails: %v", err)
			}
			data := tc.bad(c)
			if data == nil {
				data, _ = json.Marshal(c)
			}
			putRaw(t, s, 3, data)

			// A running node follows past it.
			if err := a.Sync(ctx); err != nil {
				t.Fatalf("sync over an invalid record: %v", err)
			}
			after := stateOf(a)
			before.Seq = 3
			if a.Skipped() != 1 || !reflect.DeepEqual(before, after) {
				t.Fatalf("skipped %d; state after the record:\n%+v\nwant the state before it, at seq 3:\n%+v", a.Skipped(), after, before)
			}
			// Commits after it work, and a node starting up agrees.
			res, err := a.Append(ctx, []PendingObject{pending("o3", "t", 0)})
			if err != nil || res[0].Err[0] != nil || res[0].Base[0] != 3 || a.Seq() != 4 {
				t.Fatalf("append after the invalid record: %+v %v, seq %d; want base 3 at seq 4", res, err, a.Seq())
			}
			b := openLog(t, s, Options{})
			if b.Skipped() != 1 || !reflect.DeepEqual(stateOf(a), stateOf(b)) {
				t.Fatalf("a starting node skipped %d records and has another state", b.Skipped())
			}
		})
	}
}

// TestNewerRecordStopsCatchUp: a record of a newer format version is not
// skipped (newer nodes apply it); catch-up stops there with an error
// naming its key.
func TestNewerRecordStopsCatchUp(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := openLog(t, s, Options{})
	putRaw(t, s, 1, []byte(fmt.Sprintf(`{"v":%d,"seq":1,"ops":[]}`, FormatVersion+1)))
	err := a.Sync(ctx)
	if !errors.Is(err, errNewerFormat) || !strings.Contains(err.Error(), LogKey(1)) || a.Skipped() != 0 || a.Seq() != 0 {
		t.Fatalf("sync: %v, skipped %d, seq %d; want an error naming %s", err, a.Skipped(), a.Seq(), LogKey(1))
	}
}

// TestCommitBuilderNeverWritesInvalidRecords: parts that would fail the
// check every node applies are refused one by one at Append, and the
// rest of the commit lands; no node ever skips a record this node wrote.
func TestCommitBuilderNeverWritesInvalidRecords(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := openLog(t, s, Options{})
	if _, err := a.CreateTopic(ctx, "t", 3, Retention{}); err != nil {
		t.Fatal(err)
	}
	o := pending("o1", "t", 0, 1, 2, 2)
	o.Parts[1].Count = 0                                                // no records
	o.Parts[2].Batches = Batches{{Delta: 0, Rows: 3, Off: 90, Len: 50}} // outside the object
	dup := pending("o1", "t", 0)                                        // the same object again
	res, err := a.Append(ctx, []PendingObject{o, dup})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err[0] != nil || res[0].Err[1] == nil || res[0].Err[2] == nil || res[0].Err[3] != nil || res[1].Err[0] == nil {
		t.Fatalf("results %+v: want parts 1 and 2 and the repeated object refused", res)
	}
	if res[0].Base[3] != 0 {
		t.Fatalf("partition 2's good part got base %d", res[0].Base[3])
	}
	b := openLog(t, s, Options{})
	if a.Skipped() != 0 || b.Skipped() != 0 || !reflect.DeepEqual(stateOf(a), stateOf(b)) {
		t.Fatalf("skipped %d and %d; states equal %v", a.Skipped(), b.Skipped(), reflect.DeepEqual(stateOf(a), stateOf(b)))
	}
	if _, _, _, err := a.Locate(ctx, "t", 0, 0, -1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("locate with a negative count: %v", err)
	}
	if _, _, _, err := a.Locate(ctx, "t", 3, 0, 1); !errors.Is(err, ErrUnknownPartition) || !strings.Contains(err.Error(), "0 to 2") {
		t.Fatalf("locate partition 3 of 3: %v; want the valid range", err)
	}
}

// history commits n appends to topic t (1 partition) with checkpoints
// every 4 commits, and returns the final state.
func history(t *testing.T, s tier.Store, n int) *State {
	t.Helper()
	ctx := context.Background()
	l, err := Open(ctx, s, Options{CheckpointEvery: 4, PageEntries: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic(ctx, "t", 1, Retention{}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.Append(ctx, []PendingObject{pending(fmt.Sprint("o", i), "t", 0)}); err != nil {
			t.Fatal(err)
		}
		waitCheckpoint(l)
	}
	l.Close() // waits for checkpoints
	return stateOf(l)
}

// withAllEntries replaces pages by the entries they hold, so states can be
// compared whatever was sealed.
func withAllEntries(t *testing.T, l *Log) []Entry {
	t.Helper()
	_, _, es, err := l.Locate(context.Background(), "t", 0, 0, 1<<20)
	var all []Entry
	for err == nil && len(es) > 0 {
		all = append(all, es...)
		_, _, es, err = l.Locate(context.Background(), "t", 0, es[len(es)-1].End(), 1<<20)
	}
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// TestInvalidCheckpointFallsBack: a checkpoint that does not decode or
// check is not loaded; the node falls back to an older one, or to replay
// from the start, and reaches the same state.
func TestInvalidCheckpointFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(t *testing.T, s tier.Store)
		wantCP  bool // some valid checkpoint is left
	}{
		{"latest not JSON", func(t *testing.T, s tier.Store) { overwrite(t, s, checkpointKey(8), []byte("{")) }, true},
		{"latest missing", func(t *testing.T, s tier.Store) { _ = s.Delete(context.Background(), checkpointKey(8)) }, true},
		{"latest has -1 partitions", func(t *testing.T, s tier.Store) {
			editCheckpoint(t, s, 8, func(st *State) { st.Topics["t"].Partitions = -1 })
		}, true},
		{"latest index has a gap", func(t *testing.T, s tier.Store) {
			editCheckpoint(t, s, 8, func(st *State) {
				p := st.Topics["t"].Parts[0]
				p.Entries[len(p.Entries)-1].Base++
			})
		}, true},
		{"latest at another seq", func(t *testing.T, s tier.Store) { editCheckpoint(t, s, 8, func(st *State) { st.Seq = 5 }) }, true},
		{"pointer not JSON", func(t *testing.T, s tier.Store) { overwrite(t, s, latestKey, []byte("x")) }, true},
		{"every checkpoint bad", func(t *testing.T, s tier.Store) {
			overwrite(t, s, checkpointKey(4), []byte("{}"))
			overwrite(t, s, checkpointKey(8), []byte(`{"v":1,"state":{"seq":8,"topics":{"t":null}}}`))
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			want := history(t, s, 9) // commits 1..10: checkpoints at 4 and 8
			tc.corrupt(t, s)
			cs := tiertest.NewCountingStore(s)
			l := openLog(t, cs, Options{PageEntries: 2})
			got := stateOf(l)
			if got.Seq != want.Seq || got.Topics["t"].Parts[0].End != want.Topics["t"].Parts[0].End {
				t.Fatalf("opened at seq %d, end %d; want %d, %d", got.Seq, got.Topics["t"].Parts[0].End, want.Seq, want.Topics["t"].Parts[0].End)
			}
			es := withAllEntries(t, l)
			if len(es) != 9 || es[8].Object != "o8" {
				t.Fatalf("index after fallback: %d entries", len(es))
			}
			replayed := cs.Counts(logPrefix).N(tiertest.OpGet)
			if tc.wantCP && replayed > 8 || !tc.wantCP && replayed < 10 {
				t.Fatalf("replayed %d log records", replayed)
			}
		})
	}
}

func overwrite(t *testing.T, s tier.Store, key string, data []byte) {
	t.Helper()
	if _, err := s.Put(context.Background(), key, data); err != nil {
		t.Fatal(err)
	}
}

func editCheckpoint(t *testing.T, s tier.Store, seq int64, f func(*State)) {
	t.Helper()
	data, _, err := s.Get(context.Background(), checkpointKey(seq), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	var cp checkpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		t.Fatal(err)
	}
	f(cp.State)
	data, _ = json.Marshal(cp)
	overwrite(t, s, checkpointKey(seq), data)
}

// TestStaleNodeCreatesAndDeletes: an idle node (nothing polling) decides
// create and delete on a state that has caught up: it deletes a topic
// another node just created, and re-creates one another node deleted.
func TestStaleNodeCreatesAndDeletes(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a, b := openLog(t, s, Options{}), openLog(t, s, Options{})
	if _, err := a.CreateTopic(ctx, "new", 1, Retention{}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteTopic(ctx, "new"); err != nil {
		t.Fatalf("delete on a node that has not seen the create: %v", err)
	}
	if _, err := b.CreateTopic(ctx, "old", 1, Retention{}); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteTopic(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic(ctx, "old", 2, Retention{}); err != nil {
		t.Fatalf("re-create on a node that has not seen the delete: %v", err)
	}
	if tp, err := a.Topic(ctx, "old"); err != nil || tp.Partitions != 2 {
		t.Fatalf("a sees %+v, %v", tp, err)
	}
}

// TestPartitionLimit: CreateTopic past the cluster's partition limit is
// refused with a sentinel front ends answer as a bad request.
func TestPartitionLimit(t *testing.T) {
	ctx := context.Background()
	l := openLog(t, newStore(t), Options{MaxPartitions: 10})
	if _, err := l.CreateTopic(ctx, "a", 6, Retention{}); err != nil {
		t.Fatal(err)
	}
	_, err := l.CreateTopic(ctx, "b", 5, Retention{})
	if !errors.Is(err, ErrPartitionLimit) || !errors.Is(err, ErrInvalidTopic) || !strings.Contains(err.Error(), "10") {
		t.Fatalf("create past the limit: %v", err)
	}
	if _, err := l.CreateTopic(ctx, "b", 4, Retention{}); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteTopic(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic(ctx, "c", 6, Retention{}); err != nil {
		t.Fatalf("create after a delete freed partitions: %v", err)
	}
}

// hangStore makes Get hang until its context ends while armed, as a store
// that accepted a connection and never answers.
type hangStore struct {
	tier.Store
	mu    sync.Mutex
	armed bool
}

func (h *hangStore) arm(on bool) { h.mu.Lock(); h.armed = on; h.mu.Unlock() }

func (h *hangStore) Get(ctx context.Context, key string, off, n int64) ([]byte, tier.Attrs, error) {
	h.mu.Lock()
	armed := h.armed
	h.mu.Unlock()
	if armed {
		<-ctx.Done()
		return nil, tier.Attrs{}, ctx.Err()
	}
	return h.Store.Get(ctx, key, off, n)
}

// within fails the test if f has not returned after d: the bound that
// catches a hang, not a performance assertion.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s still blocked after %v", what, d)
	}
}

// TestHungStoreDoesNotHangCatchUp: a catch-up whose GET hangs fails after
// StoreTimeout even for a caller without a deadline; a caller with a
// deadline stops waiting at its own; and once the store answers, catch-up
// works again.
func TestHungStoreDoesNotHangCatchUp(t *testing.T) {
	ctx := context.Background()
	h := &hangStore{Store: newStore(t)}
	l := openLog(t, h, Options{StoreTimeout: 300 * time.Millisecond})
	other := openLog(t, h.Store, Options{})
	if _, err := other.CreateTopic(ctx, "t", 1, Retention{}); err != nil {
		t.Fatal(err)
	}
	h.arm(true)
	var errs [2]error
	within(t, 20*time.Second, "sync without a deadline on a hung store", func() {
		var wg sync.WaitGroup
		wg.Go(func() { errs[0] = l.Sync(ctx) })
		wg.Go(func() {
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			errs[1] = l.Sync(short)
		})
		wg.Wait()
	})
	if !errors.Is(errs[0], context.DeadlineExceeded) || !errors.Is(errs[1], context.DeadlineExceeded) {
		t.Fatalf("syncs on a hung store: %v, %v; want deadline errors", errs[0], errs[1])
	}
	within(t, 20*time.Second, "topic lookup on a hung store", func() {
		if _, err := l.Topic(ctx, "t"); err == nil {
			t.Error("topic lookup on a hung store succeeded")
		}
	})
	h.arm(false)
	if _, err := l.Topic(ctx, "t"); err != nil {
		t.Fatalf("after the store recovers: %v", err)
	}
}

// TestNegativeTimestampsSeekInPages: a sealed page of entries with negative
// timestamps has a negative max timestamp, so a seek past them does not
// stop in the page.
func TestNegativeTimestampsSeekInPages(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	l := openLog(t, s, Options{CheckpointEvery: 4, PageEntries: 2})
	if _, err := l.CreateTopic(ctx, "t", 1, Retention{}); err != nil {
		t.Fatal(err)
	}
	ts := []int64{-500, -400, -300, -200, -100, -90, -80, -70, -60, -50, -40}
	for i, x := range ts {
		o := pending(fmt.Sprint("o", i), "t", 0)
		o.Parts[0].MinTs, o.Parts[0].MaxTs = x-5, x
		if _, err := l.Append(ctx, []PendingObject{o}); err != nil {
			t.Fatal(err)
		}
		waitCheckpoint(l)
	}
	l.Close()
	fresh := openLog(t, s, Options{PageEntries: 2})
	var pages int
	fresh.View(func(s *State) { pages = len(s.Topics["t"].Parts[0].Pages) })
	if pages < 2 {
		t.Fatalf("%d pages sealed; the test needs sealed pages", pages)
	}
	for _, tc := range []struct{ ts, off int64 }{{-1000, 0}, {-450, 3}, {-300, 6}, {-250, 9}, {-95, 15}, {-40, 30}, {-39, 33}, {0, 33}} {
		got, err := fresh.FindTime(ctx, "t", 0, tc.ts)
		if err != nil || got != tc.off {
			t.Errorf("FindTime(%d) = %d, %v; want %d", tc.ts, got, err, tc.off)
		}
	}
}

// waitCheckpoint waits for l's checkpoint upload in flight, so that the
// next one is not skipped for overlapping it.
func waitCheckpoint(l *Log) {
	for l.checkpointing.Load() {
		time.Sleep(time.Millisecond)
	}
}

// partialStore fails every other write of a checkpoint, its pointer or an
// index page (a persistent partial failure), and records every write that
// replaced an index page that already existed.
type partialStore struct {
	tier.Store
	mu       sync.Mutex
	writes   int
	rewrites []string
}

func (p *partialStore) fail(key string) bool {
	if !strings.HasPrefix(key, indexPrefix) && !strings.HasPrefix(key, checkpointDir) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writes++
	return p.writes%2 == 1
}

func (p *partialStore) write(ctx context.Context, key string, f func() (tier.Attrs, error)) (tier.Attrs, error) {
	if p.fail(key) {
		return tier.Attrs{}, errNetwork
	}
	_, herr := p.Store.Head(ctx, key)
	a, err := f()
	if err == nil && herr == nil && strings.HasPrefix(key, indexPrefix) {
		p.mu.Lock()
		p.rewrites = append(p.rewrites, key)
		p.mu.Unlock()
	}
	return a, err
}

func (p *partialStore) Put(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	return p.write(ctx, key, func() (tier.Attrs, error) { return p.Store.Put(ctx, key, data) })
}

func (p *partialStore) PutIfAbsent(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	return p.write(ctx, key, func() (tier.Attrs, error) { return p.Store.PutIfAbsent(ctx, key, data) })
}

func (p *partialStore) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (tier.Attrs, error) {
	return p.write(ctx, key, func() (tier.Attrs, error) { return p.Store.PutIfMatch(ctx, key, data, etag) })
}

// TestCheckpointSurvivesPartialFailure: with half of the checkpoint's
// writes failing, every due checkpoint is still written (each write is
// retried on its own), and a node that seals pages another node already
// wrote does not rewrite them.
func TestCheckpointSurvivesPartialFailure(t *testing.T) {
	ctx := context.Background()
	ps := &partialStore{Store: newStore(t)}
	a := openLog(t, ps, Options{CheckpointEvery: 4, PageEntries: 2})
	if _, err := a.CreateTopic(ctx, "t", 3, Retention{}); err != nil {
		t.Fatal(err)
	}
	b := openLog(t, ps, Options{CheckpointEvery: 4, PageEntries: 2}) // holds every entry: it writes no checkpoint yet
	for i := range 11 {
		if _, err := a.Append(ctx, []PendingObject{pending(fmt.Sprint("a", i), "t", 0, 1, 2)}); err != nil {
			t.Fatal(err)
		}
		waitCheckpoint(a)
	}
	// a wrote checkpoints 4, 8 and 12; b now takes commit 16 and seals the
	// same pages from its untrimmed entries, and more.
	for b.Seq() < 16 {
		if _, err := b.Append(ctx, []PendingObject{pending(fmt.Sprint("b", b.Seq()), "t", 0, 1, 2)}); err != nil {
			t.Fatal(err)
		}
	}
	waitCheckpoint(b)
	data, _, err := ps.Store.Get(ctx, latestKey, 0, -1)
	if err != nil || string(data) != `{"v":1,"seq":16}` {
		t.Fatalf("latest checkpoint pointer: %s, %v; want seq 16", data, err)
	}
	if len(ps.rewrites) > 0 {
		t.Fatalf("sealed pages rewritten: %v", ps.rewrites)
	}
	cs := tiertest.NewCountingStore(ps.Store)
	fresh := openLog(t, cs, Options{PageEntries: 2})
	if n := cs.Counts(logPrefix).N(tiertest.OpGet); n != 1 {
		t.Fatalf("open read %d log records; want 1 (the probe after checkpoint 16)", n)
	}
	if es := withAllEntries(t, fresh); len(es) != 15 {
		t.Fatalf("partition 0 has %d entries, want 15", len(es))
	}
}
