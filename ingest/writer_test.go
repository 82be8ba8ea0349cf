package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/fs"
	"github.com/shalelog/shale/tier/manifest"
)

func newNode(t *testing.T, s tier.Store, opts Options) (*Writer, *manifest.Log) {
	t.Helper()
	l, err := manifest.Open(context.Background(), s, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	n, err := New(s, l, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(); l.Close() })
	return n, l
}

func newStore(t *testing.T) tier.Store {
	t.Helper()
	s, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func val(p int32, i int) []byte { return []byte(fmt.Sprintf("p%d-%d", p, i)) }

// TestAppendsAreContiguousAndReadable: concurrent appends to several
// partitions get disjoint, contiguous offsets, and the committed records
// are served from the hot segment with the right values.
func TestAppendsAreContiguousAndReadable(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	n, l := newNode(t, s, Options{RollAge: 20 * time.Millisecond, RollBytes: 4 << 10})
	if _, err := l.CreateTopic(ctx, "t", 3, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	const producers, batches, per = 6, 20, 5
	type ack struct {
		base int64
		p    int32
		vals [][]byte
	}
	var mu sync.Mutex
	var acks []ack
	var wg sync.WaitGroup
	for g := range producers {
		wg.Go(func() {
			p := int32(g % 3)
			for b := range batches {
				var recs []record.Record
				var vals [][]byte
				for i := range per {
					v := val(p, g*1000+b*per+i)
					vals = append(vals, v)
					recs = append(recs, record.Record{Key: []byte("k"), Value: v, Headers: []record.Header{{Key: "h", Value: nil}}})
				}
				base, err := n.Append(ctx, "t", p, recs)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acks = append(acks, ack{base, p, vals})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	byOffset := map[[2]int64][]byte{}
	for _, a := range acks {
		for i, v := range a.vals {
			k := [2]int64{int64(a.p), a.base + int64(i)}
			if _, dup := byOffset[k]; dup {
				t.Fatalf("offset %v acknowledged twice", k)
			}
			byOffset[k] = v
		}
	}
	for p := range int32(3) {
		_, end, entries, err := l.Locate(ctx, "t", p, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(producers / 3 * batches * per); end != want {
			t.Fatalf("partition %d ends at %d, want %d", p, end, want)
		}
		next := int64(0)
		for _, e := range entries {
			recs, ok, err := n.HotRecords(e.Object, "t", p, 0, 1<<20, 1<<30)
			if err != nil || !ok {
				t.Fatalf("hot records of %s: ok %v err %v", e.Object, ok, err)
			}
			if int64(len(recs)) != e.Count {
				t.Fatalf("hot segment has %d records of %s, index says %d", len(recs), e.Object, e.Count)
			}
			for _, r := range recs {
				off := e.Base + r.Offset
				if off != next || !bytes.Equal(r.Value, byOffset[[2]int64{int64(p), off}]) {
					t.Fatalf("partition %d offset %d: got %q at %d", p, next, r.Value, off)
				}
				next++
			}
		}
	}
}

func TestAppendRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	n, l := newNode(t, newStore(t), Options{MaxBatchBytes: 1024})
	if _, err := l.CreateTopic(ctx, "t", 1, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		topic string
		part  int32
		recs  []record.Record
		want  error
	}{
		{"unknown topic", "nope", 0, []record.Record{{Value: []byte("x")}}, manifest.ErrUnknownTopic},
		{"unknown partition", "t", 1, []record.Record{{Value: []byte("x")}}, manifest.ErrUnknownPartition},
		{"negative partition", "t", -1, []record.Record{{Value: []byte("x")}}, manifest.ErrUnknownPartition},
		{"too large", "t", 0, []record.Record{{Value: make([]byte, 2048)}}, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := n.Append(ctx, tc.topic, tc.part, tc.recs); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// Nothing rejected reached the log.
	if _, end, _, _ := l.Locate(ctx, "t", 0, 0, 1); end != 0 {
		t.Fatalf("rejected appends were committed: end %d", end)
	}
}

// slowStore blocks object uploads until released.
type slowStore struct {
	tier.Store
	release chan struct{}
}

func (s *slowStore) Put(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
		return tier.Attrs{}, ctx.Err()
	}
	return s.Store.Put(ctx, key, data)
}

// TestBackpressure: with every roll stuck uploading, a new append waits
// for its deadline and fails with ErrBackpressure instead of buffering
// without bound; once the store recovers, everything accepted commits.
func TestBackpressure(t *testing.T) {
	ctx := context.Background()
	slow := &slowStore{Store: newStore(t), release: make(chan struct{})}
	n, l := newNode(t, slow, Options{RollBytes: 1024, MaxInflight: 2, RollAge: time.Hour})
	if _, err := l.CreateTopic(ctx, "t", 1, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	big := []record.Record{{Value: make([]byte, 2000)}}
	results := make(chan error, 3)
	for range 3 { // two fill the inflight slots, the third fills the open segment
		go func() { _, err := n.Append(ctx, "t", 0, big); results <- err }()
	}
	time.Sleep(100 * time.Millisecond)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := n.Append(short, "t", 0, big); !errors.Is(err, ErrBackpressure) {
		t.Fatalf("append with all rolls stuck: err %v, want ErrBackpressure", err)
	}
	close(slow.release)
	for range 3 {
		if err := <-results; err != nil {
			t.Fatalf("accepted append failed after the store recovered: %v", err)
		}
	}
	if _, end, _, _ := l.Locate(ctx, "t", 0, 0, 1); end != 3 {
		t.Fatalf("end = %d, want 3 (the refused append must not be committed)", end)
	}
}

// TestRestartDiscardsHotSegments: a new node on the same hot directory
// starts clean, and a second process cannot share the directory.
func TestHotDirectoryIsExclusive(t *testing.T) {
	s := newStore(t)
	dir := t.TempDir()
	newNode(t, s, Options{Dir: dir})
	l, err := manifest.Open(context.Background(), s, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := New(s, l, Options{Dir: dir}); err == nil {
		t.Fatal("a second node took a hot directory in use")
	}
}

func TestCloseCommitsAcceptedAppends(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	n, l := newNode(t, s, Options{RollAge: time.Hour})
	if _, err := l.CreateTopic(ctx, "t", 1, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { _, err := n.Append(ctx, "t", 0, []record.Record{{Value: []byte("v")}}); done <- err }()
	time.Sleep(50 * time.Millisecond)
	n.Close()
	if err := <-done; err != nil {
		t.Fatalf("append during close: %v", err)
	}
	if _, err := n.Append(ctx, "t", 0, []record.Record{{Value: []byte("v")}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if _, end, _, _ := l.Locate(ctx, "t", 0, 0, 1); end != 1 {
		t.Fatalf("end = %d, want 1", end)
	}
}

// TestRecreatedTopicInOneRoll: records for a topic that is deleted and
// re-created while they wait for their roll fail with ErrUnknownTopic; the
// new incarnation's records in the same window commit, and nothing else in
// the roll is affected.
func TestRecreatedTopicInOneRoll(t *testing.T) {
	ctx := context.Background()
	n, l := newNode(t, newStore(t), Options{RollAge: 300 * time.Millisecond})
	for _, name := range []string{"t", "other"} {
		if _, err := l.CreateTopic(ctx, name, 1, manifest.Retention{}); err != nil {
			t.Fatal(err)
		}
	}
	type res struct {
		base int64
		err  error
	}
	async := func(topic string) chan res {
		c := make(chan res, 1)
		go func() {
			b, err := n.Append(ctx, topic, 0, []record.Record{{Value: []byte(topic)}})
			c <- res{b, err}
		}()
		return c
	}
	first, other := async("t"), async("other")
	time.Sleep(50 * time.Millisecond)
	if err := l.DeleteTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic(ctx, "t", 1, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	second := async("t")
	if r := <-first; !errors.Is(r.err, manifest.ErrUnknownTopic) {
		t.Fatalf("append to the deleted incarnation: %+v, want ErrUnknownTopic", r)
	}
	if r := <-second; r.err != nil || r.base != 0 {
		t.Fatalf("append to the new incarnation: %+v", r)
	}
	if r := <-other; r.err != nil || r.base != 0 {
		t.Fatalf("append to an unrelated topic in the same roll: %+v", r)
	}
}

// TestWaitingWritersAreServedInOrder: when every roll is stuck uploading,
// writers that arrive later do not overtake earlier ones once the store
// recovers.
func TestWaitingWritersAreServedInOrder(t *testing.T) {
	ctx := context.Background()
	slow := &slowStore{Store: newStore(t), release: make(chan struct{})}
	n, l := newNode(t, slow, Options{RollBytes: 1024, MaxInflight: 1, RollAge: time.Hour})
	if _, err := l.CreateTopic(ctx, "t", 1, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	big := []record.Record{{Value: make([]byte, 2000)}} // one frame fills a segment
	var wg sync.WaitGroup
	for range 2 { // one uploading (stuck), one full and waiting for the slot
		wg.Go(func() { n.Append(ctx, "t", 0, big) })
		time.Sleep(20 * time.Millisecond)
	}
	const waiters = 6
	order := make(chan int, waiters)
	for i := range waiters {
		wg.Go(func() {
			if _, err := n.Append(ctx, "t", 0, big); err != nil {
				t.Error(err)
			}
			order <- i
		})
		time.Sleep(20 * time.Millisecond) // arrive in order
	}
	close(slow.release)
	wg.Wait()
	close(order)
	want := 0
	for i := range order {
		if i != want {
			t.Fatalf("writer %d was acknowledged before writer %d", i, want)
		}
		want++
	}
}

// TestHotDirectoryOwnership: ingest deletes only files it wrote. A foreign
// file, even one named *.seg, survives a start in a marked directory; a
// non-empty directory it did not mark is refused; its own leftover
// segments are removed. (Before, New removed every *.seg in the directory,
// and adopted any directory.)
func TestHotDirectoryOwnership(t *testing.T) {
	s := newStore(t)
	l, err := manifest.Open(context.Background(), s, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	foreignDir := t.TempDir()
	foreign := filepath.Join(foreignDir, "00000001.seg")
	if err := os.WriteFile(foreign, []byte("not shale's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(s, l, Options{Dir: foreignDir}); err == nil || !strings.Contains(err.Error(), "not a shale hot directory") {
		t.Fatalf("New on a foreign non-empty directory: %v, want a refusal", err)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Fatalf("foreign file after a refused start: %v", err)
	}

	// A new directory (and a missing one) is created and marked.
	dir := filepath.Join(t.TempDir(), "hot")
	n, err := New(s, l, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	if _, err := os.Stat(filepath.Join(dir, markerName)); err != nil {
		t.Fatalf("hot directory not marked: %v", err)
	}
	// Now a foreign *.seg appears beside a segment of shale's own.
	foreign = filepath.Join(dir, "00000001.seg")
	own := segmentFile(dir, 7)
	for _, f := range []string{foreign, own, filepath.Join(dir, "notes.txt")} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, err = New(s, l, Options{Dir: dir})
	if err != nil {
		t.Fatalf("restart in a marked directory: %v", err)
	}
	defer n.Close()
	if _, err := os.Stat(own); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover segment %s not removed: %v", own, err)
	}
	for _, f := range []string{foreign, filepath.Join(dir, "notes.txt")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("file shale did not write was touched: %v", err)
		}
	}
}
