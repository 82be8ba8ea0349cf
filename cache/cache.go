// Package cache is a byte-bounded LRU of fetched object bytes (whole small
// objects, or single batches of large ones), shared by all readers of a
// node, so that consumers replaying the same range fetch it from the store
// once. Bytes are cached raw and checked against their CRC on every use, so
// the cache cannot hand out data that differs from what was committed.
package cache

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Key names a byte range of an object (Len < 0: the whole object).
// Objects are immutable, so a key's value never changes.
type Key struct {
	Object string
	Off    int64
	Len    int64
}

type entry struct {
	data []byte
	size int64
}

// Stats are the cache's counters.
type Stats struct {
	Hits    int64 `json:"hits"`
	Misses  int64 `json:"misses"`
	Bytes   int64 `json:"bytes"`
	Entries int   `json:"entries"`
}

// Cache is safe for concurrent use. The zero value is not usable; call New.
type Cache struct {
	max          int64
	hits, misses atomic.Int64

	mu struct {
		sync.Mutex
		lru   *simplelru.LRU[Key, entry]
		bytes int64
	}
}

// New returns a cache holding at most maxBytes. maxBytes <= 0 disables
// caching.
func New(maxBytes int64) *Cache {
	c := &Cache{max: maxBytes}
	// The count bound is effectively off: bytes are the bound, enforced in Add.
	c.mu.lru, _ = simplelru.NewLRU[Key, entry](math.MaxInt32, func(_ Key, e entry) { c.mu.bytes -= e.size })
	return c
}

// Get returns cached bytes and counts a hit or a miss. Callers must not
// modify them.
func (c *Cache) Get(k Key) ([]byte, bool) {
	c.mu.Lock()
	e, ok := c.mu.lru.Get(k)
	c.mu.Unlock()
	if ok {
		c.hits.Add(1)
		return e.data, true
	}
	c.misses.Add(1)
	return nil, false
}

// Add stores bytes, evicting the least recently used entries until the
// cache fits its bound. An entry larger than the whole bound is not stored.
func (c *Cache) Add(k Key, data []byte) {
	size := int64(len(data))
	if size > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.mu.lru.Peek(k); ok {
		c.mu.bytes -= old.size
	}
	c.mu.lru.Add(k, entry{data: data, size: size})
	c.mu.bytes += size
	for c.mu.bytes > c.max {
		c.mu.lru.RemoveOldest()
	}
}

// Cap is the cache's bound in bytes.
func (c *Cache) Cap() int64 { return c.max }

// Stats returns the current counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Bytes: c.mu.bytes, Entries: c.mu.lru.Len()}
}
