package reader

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/shalelog/shale/cache"
	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/fs"
	"github.com/shalelog/shale/tier/manifest"
)

// TestOffsetForNegativeTimestamps: records may carry negative timestamps
// (Kafka's -1 for "no timestamp", or history before 1970), in any order.
// A time seek returns the first offset whose timestamp is at or after the
// one asked for, from the hot segments and from the objects alike.
func TestOffsetForNegativeTimestamps(t *testing.T) {
	ctx := context.Background()
	s, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l, err := manifest.Open(ctx, s, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n, err := ingest.New(s, l, ingest.Options{Dir: t.TempDir(), RollAge: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := l.CreateTopic(ctx, "t", 1, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	// Each append is one entry: all negative, mixed, Kafka's -1, and
	// out of order.
	batches := [][]int64{
		{-90000, -80000, -85000},
		{-1, -1, -1},
		{-70000, -1, -75000},
		{-500, -400, -450},
		{-60000, -2, -3},
		{-1, 5, -1},
		{-100, -200, -300},
	}
	var ts []int64
	for _, b := range batches {
		recs := make([]record.Record, len(b))
		for i, v := range b {
			recs[i] = record.Record{Timestamp: v, Value: []byte("v")}
		}
		if _, err := n.Append(ctx, "t", 0, recs); err != nil {
			t.Fatal(err)
		}
		ts = append(ts, b...)
	}
	// want is the first offset with a timestamp at or after q, or the end.
	want := func(q int64) int64 {
		for i, v := range ts {
			if v >= q {
				return int64(i)
			}
		}
		return int64(len(ts))
	}
	hot := New(l, s, n, cache.New(1<<20), Options{})
	cold := New(l, s, nil, cache.New(1<<20), Options{})
	for name, m := range map[string]*Merge{"hot": hot, "cold": cold} {
		for _, q := range []int64{math.MinInt64, -100000, -90000, -85000, -80001, -75000, -70001, -60000, -1000, -450, -300, -100, -3, -2, -1, 0, 5, 6, math.MaxInt64} {
			got, err := m.OffsetForTime(ctx, "t", 0, q)
			if err != nil || got != want(q) {
				t.Errorf("%s: OffsetForTime(%d) = %d, %v; want %d", name, q, got, err, want(q))
			}
		}
	}
	// The records read back keep their timestamps.
	for off := int64(0); off < int64(len(ts)); {
		res, err := cold.Read(ctx, "t", 0, off, 100, 1<<20, 0)
		if err != nil || len(res.Records) == 0 {
			t.Fatalf("read at %d: %d records, %v", off, len(res.Records), err)
		}
		for _, r := range res.Records {
			if r.Timestamp != ts[r.Offset] {
				t.Fatalf("record %d has timestamp %d, want %d", r.Offset, r.Timestamp, ts[r.Offset])
			}
		}
		off += int64(len(res.Records))
	}
}
