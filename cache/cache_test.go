package cache

import (
	"fmt"
	"testing"
)

func recs(n, size int) []byte { return make([]byte, n*size) }

func TestCacheBoundsBytesAndCounts(t *testing.T) {
	one := int64(1000)
	c := New(10 * one)
	for i := range 20 {
		c.Add(Key{Object: fmt.Sprint(i)}, recs(1, 1000))
		if st := c.Stats(); st.Bytes > 10*one {
			t.Fatalf("after %d adds the cache holds %d bytes, bound %d", i+1, st.Bytes, 10*one)
		}
	}
	if _, ok := c.Get(Key{Object: "0"}); ok {
		t.Fatal("oldest batch survived eviction")
	}
	if _, ok := c.Get(Key{Object: "19"}); !ok {
		t.Fatal("newest batch was evicted")
	}
	st := c.Stats()
	if st.Hits != 1 || st.Misses != 1 || st.Entries != 10 {
		t.Fatalf("stats = %+v, want 1 hit, 1 miss, 10 entries", st)
	}
	// Re-adding a key replaces its size instead of double counting.
	c.Add(Key{Object: "19"}, recs(1, 1000))
	if st := c.Stats(); st.Bytes != 10*one {
		t.Fatalf("bytes after re-add = %d, want %d", st.Bytes, 10*one)
	}
	// A batch larger than the bound is not kept.
	c.Add(Key{Object: "huge"}, recs(20, 1000))
	if _, ok := c.Get(Key{Object: "huge"}); ok {
		t.Fatal("oversize batch was cached")
	}
}
