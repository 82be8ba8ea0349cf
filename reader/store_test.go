package reader

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shalelog/shale/cache"
	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/fs"
	"github.com/shalelog/shale/tier/manifest"
)

// faultyStore makes Gets of keys with prefix hang until their context
// ends (mode "hang") or fail at once (mode "fail").
type faultyStore struct {
	tier.Store
	prefix atomic.Pointer[string]
	mode   atomic.Pointer[string]
}

func (s *faultyStore) set(prefix, mode string) { s.prefix.Store(&prefix); s.mode.Store(&mode) }

func (s *faultyStore) Get(ctx context.Context, key string, off, n int64) ([]byte, tier.Attrs, error) {
	if p := s.prefix.Load(); p != nil && *p != "" && strings.HasPrefix(key, *p) {
		if *s.mode.Load() == "fail" {
			return nil, tier.Attrs{}, errors.New("dial tcp: connection refused")
		}
		<-ctx.Done()
		return nil, tier.Attrs{}, ctx.Err()
	}
	return s.Store.Get(ctx, key, off, n)
}

// setup commits 10 records of topic "t" to the store in their own objects
// and returns a log over the faulty store.
func setup(t *testing.T) (*faultyStore, *manifest.Log) {
	t.Helper()
	ctx := context.Background()
	base, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &faultyStore{Store: base}
	l, err := manifest.Open(ctx, s, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	n, err := ingest.New(s, l, ingest.Options{Dir: t.TempDir(), RollAge: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := l.CreateTopic(ctx, "t", 1, manifest.Retention{}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := n.Append(ctx, "t", 0, []record.Record{{Timestamp: int64(i + 1), Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
	}
	return s, l
}

// TestStoreOutageIsErrStore: with the store hanging or refusing, every
// read fails with ErrStore within the store timeout, however long the
// caller would wait: object GETs, ranged and whole (the shared fetch is
// detached from its callers but still bounded), and the log catch-up of
// a read at the end. (Before, a read waited for the caller's context, and
// a shared fetch for a fixed minute.)
func TestStoreOutageIsErrStore(t *testing.T) {
	s, l := setup(t)
	const timeout = 100 * time.Millisecond
	for _, tc := range []struct {
		name, prefix, mode string
		cache              int64 // 0: ranged GETs; else whole-object fetches
		offset             int64
	}{
		{"ranged GET hangs", "data/", "hang", 0, 0},
		{"whole-object GET hangs", "data/", "hang", 1 << 20, 0},
		{"ranged GET fails", "data/", "fail", 0, 0},
		{"whole-object GET fails", "data/", "fail", 1 << 20, 0},
		{"log catch-up hangs", "manifest/", "hang", 0, 10},
		{"log catch-up fails", "manifest/", "fail", 0, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.set(tc.prefix, tc.mode)
			defer s.set("", "")
			m := New(l, s, nil, cache.New(tc.cache), Options{StoreTimeout: timeout})
			// The caller would wait far longer than the store timeout.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := m.Read(ctx, "t", 0, tc.offset, 10, 1<<20, 0); !errors.Is(err, ErrStore) {
				t.Fatalf("read: %v, want ErrStore", err)
			}
			if tc.offset == 0 {
				if _, err := m.OffsetForTime(ctx, "t", 0, 5); !errors.Is(err, ErrStore) {
					t.Fatalf("offset for time: %v, want ErrStore", err)
				}
			}
		})
	}
	// Recovered: the same reads answer.
	m := New(l, s, nil, cache.New(1<<20), Options{StoreTimeout: timeout})
	if res, err := m.Read(context.Background(), "t", 0, 0, 10, 1<<20, 0); err != nil || len(res.Records) == 0 {
		t.Fatalf("read after recovery: %+v %v", res, err)
	}
}

// TestSharedFetchOutlivesItsCaller: the whole-object fetch that concurrent
// readers share keeps going when the caller that started it leaves, and
// still ends at the store timeout.
func TestSharedFetchOutlivesItsCaller(t *testing.T) {
	s, l := setup(t)
	s.set("data/", "hang")
	m := New(l, s, nil, cache.New(1<<20), Options{StoreTimeout: time.Second})
	first, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := m.Read(first, "t", 0, 0, 10, 1<<20, 0); done <- err }()
	time.Sleep(50 * time.Millisecond) // the first caller's fetch is in flight
	second := make(chan error, 1)
	go func() { _, err := m.Read(context.Background(), "t", 0, 0, 10, 1<<20, 0); second <- err }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	select {
	case err := <-second:
		t.Fatalf("the second caller returned early (%v): the shared fetch ended with the first caller", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := <-second; !errors.Is(err, ErrStore) {
		t.Fatalf("second caller of a hung shared fetch: %v, want ErrStore", err)
	}
}

// TestReadRejectsNegativeArguments: negative limits are ErrInvalid naming
// the valid range; a negative offset is out of the partition's range.
func TestReadRejectsNegativeArguments(t *testing.T) {
	s, l := setup(t)
	m := New(l, s, nil, cache.New(0), Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		name         string
		offset       int64
		recs, bytes  int
		want         error
		wantContains string
	}{
		{"negative max records", 0, -1, 0, ErrInvalid, "0 (the default, 1000) or more"},
		{"negative max bytes", 0, 0, -5, ErrInvalid, "0 (the default, 1 MiB) or more"},
		{"negative offset", -5, 0, 0, ErrOffsetOutOfRange, "offset -5 of t/0 is outside [0, 10]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Read(ctx, "t", 0, tc.offset, tc.recs, tc.bytes, 0)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantContains) {
				t.Fatalf("read: %v, want %v containing %q", err, tc.want, tc.wantContains)
			}
		})
	}
}
