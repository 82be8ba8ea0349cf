package tiertest

import (
	"context"
	"strings"
	"sync"

	"github.com/shalelog/shale/tier"
)

// Counts are the requests a CountingStore passed on, and their bytes.
type Counts struct {
	Requests [numOps]int64 // by operation; use N to sum a set
	PutBytes int64         // data given to Put, PutIfAbsent and PutIfMatch
	GotBytes int64         // data returned by Get
}

// N returns the number of requests of the operations in ops.
func (c Counts) N(ops Op) int64 {
	var n int64
	for i := range numOps {
		if ops&(1<<i) != 0 {
			n += c.Requests[i]
		}
	}
	return n
}

// CountingStore wraps a tier.Store and counts every call and its bytes, by
// operation and by key directory (the key up to its last '/'; for List,
// the listed prefix's). A call is counted when it is made, whether or not
// it succeeds, since a failed request still costs one.
type CountingStore struct {
	tier.Store

	mu    sync.Mutex
	byDir map[string]*Counts // guarded by mu
}

// NewCountingStore returns s with every count at zero.
func NewCountingStore(s tier.Store) *CountingStore {
	return &CountingStore{Store: s, byDir: map[string]*Counts{}}
}

// Counts returns the sum of the counts of every key that starts with
// prefix; "" sums all. A prefix ending in '/' (such as "data/") takes the
// keys under it, at any depth.
func (c *CountingStore) Counts(prefix string) Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum Counts
	for dir, n := range c.byDir {
		if !strings.HasPrefix(dir, prefix) {
			continue
		}
		for i := range numOps {
			sum.Requests[i] += n.Requests[i]
		}
		sum.PutBytes += n.PutBytes
		sum.GotBytes += n.GotBytes
	}
	return sum
}

// Reset sets every count to zero.
func (c *CountingStore) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.byDir)
}

func (c *CountingStore) count(op Op, key string, put, got int) {
	dir := key[:strings.LastIndex(key, "/")+1]
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.byDir[dir]
	if n == nil {
		n = &Counts{}
		c.byDir[dir] = n
	}
	n.Requests[op.index()]++
	n.PutBytes += int64(put)
	n.GotBytes += int64(got)
}

func (c *CountingStore) Put(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	c.count(OpPut, key, len(data), 0)
	return c.Store.Put(ctx, key, data)
}

func (c *CountingStore) PutIfAbsent(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	c.count(OpPutIfAbsent, key, len(data), 0)
	return c.Store.PutIfAbsent(ctx, key, data)
}

func (c *CountingStore) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (tier.Attrs, error) {
	c.count(OpPutIfMatch, key, len(data), 0)
	return c.Store.PutIfMatch(ctx, key, data, etag)
}

func (c *CountingStore) Get(ctx context.Context, key string, off, length int64) ([]byte, tier.Attrs, error) {
	data, a, err := c.Store.Get(ctx, key, off, length)
	c.count(OpGet, key, 0, len(data))
	return data, a, err
}

func (c *CountingStore) Head(ctx context.Context, key string) (tier.Attrs, error) {
	c.count(OpHead, key, 0, 0)
	return c.Store.Head(ctx, key)
}

func (c *CountingStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]tier.Attrs, error) {
	c.count(OpList, prefix, 0, 0)
	return c.Store.List(ctx, prefix, startAfter, limit)
}

func (c *CountingStore) Delete(ctx context.Context, key string) error {
	c.count(OpDelete, key, 0, 0)
	return c.Store.Delete(ctx, key)
}
