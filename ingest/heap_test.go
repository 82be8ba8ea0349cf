package ingest

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/manifest"
)

// writeFrames puts one tiny frame for each of partitions 0..parts-1 of
// topic into the current segment, as Append does, without waiting for
// commits, and returns the frames' result channels.
func writeFrames(t *testing.T, n *Writer, topic string, parts int) []chan result {
	t.Helper()
	ctx := context.Background()
	tp, err := n.log.Topic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	recs := []record.Record{{Value: []byte("v")}}
	done := make([]chan result, parts)
	for p := range parts {
		buf := appendFrame(nil, topic, tp.ID, int32(p), recs, 1, nil)
		done[p] = make(chan result, 1)
		fr := frameRef{topic: topic, topicID: tp.ID, partition: int32(p), count: len(recs), done: done[p]}
		if err := n.write(ctx, fr, buf); err != nil {
			t.Fatal(err)
		}
	}
	return done
}

// heapAlloc is the live heap. Two collections empty sync.Pools (the
// object encoder's among them), whose victims survive one.
func heapAlloc() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestTinyFramesRollEarly: a segment's accounted size grows with its frame
// count, not only its bytes, so many tiny frames roll before their bytes
// alone would make them. (Before, 1,000 frames of ~30 bytes filled a third
// of a 64 KiB segment while taking ~450 KB of heap.)
func TestTinyFramesRollEarly(t *testing.T) {
	ctx := context.Background()
	n, l := newNode(t, newStore(t), Options{RollBytes: 64 << 10, RollAge: time.Hour, MaxInflight: 64})
	if _, err := l.CreateTopic(ctx, "t", 1000, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	before := n.mu.seq
	n.mu.Unlock()
	done := writeFrames(t, n, "t", 10)
	n.mu.Lock()
	cost, size := n.mu.cur.cost, n.mu.cur.size
	n.mu.Unlock()
	if min := size + 10*(pendingFrameCost+pendingRecordCost+pendingPartCost); cost < min {
		t.Fatalf("10 frames of %d bytes are accounted as %d bytes, want at least %d", size, cost, min)
	}
	done = append(done, writeFrames(t, n, "t", 1000)...)
	n.mu.Lock()
	rolls := n.mu.seq - before
	bytes := n.mu.lastSize
	n.mu.Unlock()
	if rolls < 10 {
		t.Fatalf("1,010 tiny frames made %d segments (the last rolled at %d file bytes), want one per few dozen frames at most", rolls, bytes)
	}
	n.Close()
	for _, d := range done {
		if r := <-d; r.err != nil {
			t.Fatal(r.err)
		}
	}
}

// TestTinyFramesEvictEarly: a committed segment is charged its index heap
// against HotBytes, so a segment of many tiny frames is not held beyond
// the budget. (Before, 1,000 frames of 30 bytes counted 30 KB against a
// 64 KiB budget.)
func TestTinyFramesEvictEarly(t *testing.T) {
	ctx := context.Background()
	n, l := newNode(t, newStore(t), Options{HotBytes: 64 << 10, RollAge: time.Hour})
	if _, err := l.CreateTopic(ctx, "t", 1000, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	done := writeFrames(t, n, "t", 1000)
	n.mu.Lock()
	n.sealLocked()
	n.mu.Unlock()
	for _, d := range done {
		if r := <-d; r.err != nil {
			t.Fatal(r.err)
		}
	}
	_, _, entries, err := l.Locate(ctx, "t", 0, 0, 1)
	if err != nil || len(entries) != 1 {
		t.Fatalf("locate: %v %v", entries, err)
	}
	if n.Holds(entries[0].Object) {
		n.mu.Lock()
		defer n.mu.Unlock()
		t.Fatalf("a segment of 1,000 frames is held with %d of %d hot bytes accounted", n.mu.hotBytes, n.opts.HotBytes)
	}
}

// TestHeldSegmentHeap measures the heap of one frame in each of 10,000
// partitions, while the frames wait for their roll and once committed and
// held for reads, and checks that the segment's accounted size covers it
// (docs/design.md, "Memory of hot segments").
func TestHeldSegmentHeap(t *testing.T) {
	const parts = 10000
	ctx := context.Background()
	n, l := newNode(t, newStore(t), Options{RollBytes: 1 << 40, HotBytes: 1 << 40, RollAge: time.Hour})
	if _, err := l.CreateTopic(ctx, "t", parts, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.log.Topic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	base := heapAlloc()
	done := writeFrames(t, n, "t", parts)
	pending := heapAlloc() - base
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n.mu.Lock()
	s := n.mu.cur
	charged, size := s.cost-s.size, s.size
	mem := int64(cap(s.mem))
	n.sealLocked()
	n.mu.Unlock()
	for _, d := range done {
		if r := <-d; r.err != nil {
			t.Fatal(r.err)
		}
	}
	runtime.ReadMemStats(&after)
	rolled := int64(after.TotalAlloc - before.TotalAlloc)
	withHeld := heapAlloc()
	n.mu.Lock()
	heldCharged := s.held - s.size
	n.mu.Unlock()
	s = nil
	n.Close() // drops the held segment; the log and its state stay
	held := withHeld - heapAlloc()
	t.Logf("%d partitions, one frame each (%d B of segment file): per frame, %d B of heap while pending (%d B charged), %d B allocated by the roll (garbage included), %d B held once committed (%d B charged)",
		parts, size, (pending-mem)/parts, charged/parts, rolled/parts, held/parts, heldCharged/parts)
	if pending-mem > charged {
		t.Errorf("pending frames take %d B of heap beyond their file bytes, only %d B are charged", pending-mem, charged)
	}
	if held > heldCharged {
		t.Errorf("the held segment takes %d B of heap, only %d B are charged", held, heldCharged)
	}
	runtime.KeepAlive(done)
}
