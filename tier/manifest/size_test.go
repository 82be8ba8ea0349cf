package manifest

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/shalelog/shale/tier"
)

// TestTenThousandPartitionsCost measures what a cluster of 10,000
// partitions costs the commit log: the checkpoint's bytes and the heap of
// a node's loaded state, with empty partitions and with 8 index entries
// per partition (rolled objects of one batch each; a checkpoint keeps at
// most PageEntries−1 entries per partition, older ones go to pages).
// The numbers are in docs/design.md; the bounds only catch a regression
// by a large factor.
func TestTenThousandPartitionsCost(t *testing.T) {
	const partitions = 10000
	for _, tc := range []struct {
		entries                int
		maxCheckpoint, maxHeap int64
	}{
		{0, 2 << 20, 8 << 20},
		{8, 40 << 20, 100 << 20},
	} {
		t.Run(fmt.Sprint(tc.entries, " entries per partition"), func(t *testing.T) {
			s := newStore(t)
			size := writeBigCheckpoint(t, s, partitions, tc.entries)
			var before, after runtime.MemStats
			settle := func(m *runtime.MemStats) {
				// Twice: pooled buffers (encoding/json's) survive one GC.
				runtime.GC()
				runtime.GC()
				runtime.ReadMemStats(m)
			}
			settle(&before)
			l := openLog(t, s, Options{})
			settle(&after)
			heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			var n int
			l.View(func(s *State) { n = len(s.Topics["t"].Parts) })
			runtime.KeepAlive(l)
			t.Logf("%d partitions, %d entries each: checkpoint %d bytes (%d per partition), loaded state %d bytes of heap (%d per partition)",
				n, tc.entries, size, size/partitions, heap, heap/partitions)
			if size > tc.maxCheckpoint || heap > tc.maxHeap {
				t.Fatalf("checkpoint %d bytes (bound %d), heap %d bytes (bound %d)", size, tc.maxCheckpoint, heap, tc.maxHeap)
			}
		})
	}
}

// writeBigCheckpoint writes the checkpoint of a topic of partitions
// partitions with entries entries each, and returns its size. Nothing of
// the state it builds outlives it.
func writeBigCheckpoint(t *testing.T, s tier.Store, partitions, entries int) int64 {
	ctx := context.Background()
	st := newState()
	st.Seq = 1
	ts := &TopicState{Topic: Topic{Name: "t", ID: "0123456789abcdef0123456789abcdef", Partitions: int32(partitions), CreatedMs: 1795673581267}}
	for p := range partitions {
		part := &Partition{}
		for i := range entries {
			part.Entries = append(part.Entries, Entry{
				Object:     fmt.Sprintf("data/%013d-host-1234-%016x.arrow", 1795673581267+i, i),
				ObjectSize: 16 << 20, Base: part.End,
				Span: Span{Count: 100, MinTs: 1795673581000, MaxTs: 1795673581250, Bytes: 1600,
					Batches: Batches{{Delta: 0, Rows: 100, Off: int64(p) * 1600, Len: 1600, CRC: 0xdeadbeef}}},
			})
			part.End += 100
			part.Bytes += 1600
		}
		ts.Parts = append(ts.Parts, part)
	}
	st.Topics["t"] = ts
	w := &Log{store: s, opts: Options{PageEntries: 1024, StoreTimeout: defaultStoreTimeout}}
	snap, pages := snapshotSealed(st, 1024)
	if err := w.writeCheckpoint(ctx, snap, pages); err != nil {
		t.Fatal(err)
	}
	a, err := s.Head(ctx, checkpointKey(1))
	if err != nil {
		t.Fatal(err)
	}
	return a.Size

}
