package reader

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/shalelog/shale/cache"
	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/fs"
	"github.com/shalelog/shale/tier/manifest"
)

// TestMergeAcrossTiers writes enough rolls that the node keeps only the
// newest segments locally; a read from 0 must come out contiguous and
// identical whether it takes the hot tier where it can or objects only.
func TestMergeAcrossTiers(t *testing.T) {
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
	n, err := ingest.New(s, l, ingest.Options{Dir: t.TempDir(), RollAge: time.Millisecond, HotBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := l.CreateTopic(ctx, "m", 1, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 60 {
		var recs []record.Record
		for j := range 5 {
			v := fmt.Sprintf("v%d-%d", i, j)
			want = append(want, v)
			recs = append(recs, record.Record{Timestamp: int64(1000 + i), Value: []byte(v)})
		}
		if _, err := n.Append(ctx, "m", 0, recs); err != nil {
			t.Fatal(err)
		}
	}
	hot := New(l, s, n, cache.New(1<<20), Options{})
	cold := New(l, s, nil, cache.New(1<<20), Options{})
	readAll := func(m *Merge) []record.Record {
		var out []record.Record
		for off := int64(0); off < int64(len(want)); {
			res, err := m.Read(ctx, "m", 0, off, 7, 1<<20, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Records) == 0 || len(res.Records) > 7 {
				t.Fatalf("read at %d returned %d records", off, len(res.Records))
			}
			out = append(out, res.Records...)
			off = res.Records[len(res.Records)-1].Offset + 1
		}
		return out
	}
	a, b := readAll(hot), readAll(cold)
	for i, r := range a {
		if r.Offset != int64(i) || string(r.Value) != want[i] {
			t.Fatalf("record %d: offset %d value %q, want %q", i, r.Offset, r.Value, want[i])
		}
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the hot-tier read and the object-only read differ")
	}
	if st := hot.cache.Stats(); st.Misses == 0 {
		t.Fatal("no read reached the objects: the hot tier was not bounded")
	}
	// Seek by time: records of append i have timestamp 1000+i.
	for _, tc := range []struct{ ts, off int64 }{{0, 0}, {1000, 0}, {1030, 150}, {1059, 295}, {2000, 300}} {
		got, err := cold.OffsetForTime(ctx, "m", 0, tc.ts)
		if err != nil || got != tc.off {
			t.Fatalf("OffsetForTime(%d) = %d, %v; want %d", tc.ts, got, err, tc.off)
		}
	}
	// Out of range and unknown.
	if _, err := cold.Read(ctx, "m", 0, 301, 1, 1, 0); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read past the end: %v", err)
	}
	if _, err := cold.Read(ctx, "nope", 0, 0, 1, 1, 0); !errors.Is(err, manifest.ErrUnknownTopic) {
		t.Fatalf("read of unknown topic: %v", err)
	}
	// At the end with a wait: returns empty at the deadline.
	start := time.Now()
	res, err := cold.Read(ctx, "m", 0, 300, 10, 1<<20, 50*time.Millisecond)
	if err != nil || len(res.Records) != 0 || res.End != 300 || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("long poll at the end: %+v %v after %v", res, err, time.Since(start))
	}
}
