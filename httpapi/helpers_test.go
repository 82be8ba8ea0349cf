package httpapi

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/tier"
)

// startServer runs a node with its HTTP API, as startNode does, with the
// given limits.
func startServer(t *testing.T, s tier.Store, set func(*shale.Options), limits Limits) (*shale.Node, *Client) {
	t.Helper()
	opts := shale.DefaultOptions()
	opts.HotDir = t.TempDir()
	opts.RollAge = 20 * time.Millisecond
	opts.CacheBytes = 1 << 20
	if set != nil {
		set(&opts)
	}
	n, err := shale.Start(context.Background(), s, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(n, limits)
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); n.Close() })
	return n, NewClient(addr)
}

// hangStore wraps a store; while down, every call blocks until its
// context ends, as calls to a store that stopped answering do.
type hangStore struct {
	tier.Store
	mu   sync.Mutex
	down chan struct{} // closed while up; open while down
}

func newHangStore(s tier.Store) *hangStore {
	h := &hangStore{Store: s, down: make(chan struct{})}
	close(h.down)
	return h
}

// setDown stops (true) or restores (false) the store.
func (h *hangStore) setDown(down bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.down:
		if down {
			h.down = make(chan struct{})
		}
	default:
		if !down {
			close(h.down)
		}
	}
}

var errHung = errors.New("store call hung until its deadline")

func (h *hangStore) wait(ctx context.Context) error {
	h.mu.Lock()
	ch := h.down
	h.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return errors.Join(errHung, ctx.Err())
	}
}

func (h *hangStore) Put(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	if err := h.wait(ctx); err != nil {
		return tier.Attrs{}, err
	}
	return h.Store.Put(ctx, key, data)
}

func (h *hangStore) PutIfAbsent(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	if err := h.wait(ctx); err != nil {
		return tier.Attrs{}, err
	}
	return h.Store.PutIfAbsent(ctx, key, data)
}

func (h *hangStore) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (tier.Attrs, error) {
	if err := h.wait(ctx); err != nil {
		return tier.Attrs{}, err
	}
	return h.Store.PutIfMatch(ctx, key, data, etag)
}

func (h *hangStore) Get(ctx context.Context, key string, off, length int64) ([]byte, tier.Attrs, error) {
	if err := h.wait(ctx); err != nil {
		return nil, tier.Attrs{}, err
	}
	return h.Store.Get(ctx, key, off, length)
}

func (h *hangStore) Head(ctx context.Context, key string) (tier.Attrs, error) {
	if err := h.wait(ctx); err != nil {
		return tier.Attrs{}, err
	}
	return h.Store.Head(ctx, key)
}

func (h *hangStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]tier.Attrs, error) {
	if err := h.wait(ctx); err != nil {
		return nil, err
	}
	return h.Store.List(ctx, prefix, startAfter, limit)
}

func (h *hangStore) Delete(ctx context.Context, key string) error {
	if err := h.wait(ctx); err != nil {
		return err
	}
	return h.Store.Delete(ctx, key)
}

// postJSON posts a JSON body and returns the error a client would see.
func postJSON(c *Client, path, body string) error {
	_, _, err := c.do(context.Background(), "POST", path, "application/json", []byte(body), "application/json", 0)
	return err
}
