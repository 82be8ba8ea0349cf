package tiertest

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shalelog/shale/tier"
)

// MemStore is a tier.Store in memory, for tests that need a store but not
// a filesystem or a server. It keeps S3's semantics where they matter to
// callers: an object's ETag is the hex MD5 of its content (so rewriting the
// same bytes keeps the ETag, as on S3), a write never changes the bytes a
// caller holds, and a write's ModTime is the time it landed. It passes
// AcceptanceTest.
type MemStore struct {
	mu      sync.RWMutex
	objects map[string]memObject // guarded by mu
}

type memObject struct {
	data    []byte // never modified once stored
	etag    string
	modTime time.Time
}

var _ tier.Store = (*MemStore)(nil)

// NewMemStore returns an empty in-memory store.
func NewMemStore() *MemStore {
	return &MemStore{objects: map[string]memObject{}}
}

func (m *MemStore) String() string { return fmt.Sprintf("mem://%p", m) }

// Close does nothing; the objects stay readable, as a bucket outlives a
// client.
func (m *MemStore) Close() error { return nil }

func (m *MemStore) Put(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	return m.put(ctx, "put", key, data, func(memObject, bool) error { return nil })
}

func (m *MemStore) PutIfAbsent(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	return m.put(ctx, "put if absent", key, data, func(_ memObject, exists bool) error {
		if exists {
			return tier.ErrConflict
		}
		return nil
	})
}

func (m *MemStore) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (tier.Attrs, error) {
	return m.put(ctx, "put if match", key, data, func(old memObject, exists bool) error {
		switch {
		case !exists:
			return tier.ErrNotFound
		case old.etag != etag:
			return tier.ErrConflict
		}
		return nil
	})
}

// put stores a copy of data at key if check, run under the lock on the
// current object, allows it.
func (m *MemStore) put(ctx context.Context, op, key string, data []byte, check func(old memObject, exists bool) error) (tier.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return tier.Attrs{}, fmt.Errorf("%s %s: %w", op, key, err)
	}
	sum := md5.Sum(data)
	obj := memObject{data: slices.Clone(data), etag: hex.EncodeToString(sum[:]), modTime: time.Now()}
	if obj.data == nil {
		obj.data = []byte{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, exists := m.objects[key]
	if err := check(old, exists); err != nil {
		return tier.Attrs{}, fmt.Errorf("%s %s: %w", op, key, err)
	}
	m.objects[key] = obj
	return obj.attrs(key), nil
}

func (m *MemStore) Get(ctx context.Context, key string, off, length int64) ([]byte, tier.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return nil, tier.Attrs{}, fmt.Errorf("get %s: %w", key, err)
	}
	if off < 0 {
		return nil, tier.Attrs{}, fmt.Errorf("get %s: negative offset %d", key, off)
	}
	obj, err := m.lookup("get", key)
	if err != nil {
		return nil, tier.Attrs{}, err
	}
	size := int64(len(obj.data))
	start := min(off, size)
	end := size
	if length >= 0 && length < size-start {
		end = start + length
	}
	return slices.Clone(obj.data[start:end:end]), obj.attrs(key), nil
}

func (m *MemStore) Head(ctx context.Context, key string) (tier.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return tier.Attrs{}, fmt.Errorf("head %s: %w", key, err)
	}
	obj, err := m.lookup("head", key)
	if err != nil {
		return tier.Attrs{}, err
	}
	return obj.attrs(key), nil
}

func (m *MemStore) lookup(op, key string) (memObject, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	obj, ok := m.objects[key]
	if !ok {
		return memObject{}, fmt.Errorf("%s %s: %w", op, key, tier.ErrNotFound)
	}
	return obj, nil
}

func (m *MemStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]tier.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %q after %q: %w", prefix, startAfter, err)
	}
	m.mu.RLock()
	var out []tier.Attrs
	for k, obj := range m.objects {
		if strings.HasPrefix(k, prefix) && k > startAfter {
			out = append(out, obj.attrs(k))
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b tier.Attrs) int { return strings.Compare(a.Key, b.Key) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (m *MemStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, key)
	return nil
}

func (o memObject) attrs(key string) tier.Attrs {
	return tier.Attrs{Key: key, Size: int64(len(o.data)), ETag: o.etag, ModTime: o.modTime}
}
