// Package tiertest holds the contract suite that every tier.Store backend
// must pass, a harness that runs a real MinIO server for the remote
// backends' tests, and test doubles: an in-memory store (NewMemStore), a
// fault-injecting wrapper (NewFaultStore) and a counting wrapper
// (NewCountingStore).
package tiertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shalelog/shale/tier"
)

// AcceptanceTest checks s against every clause of the tier.Store contract.
// It writes only under a key prefix unique to the call, and deletes what it
// wrote, so it can share a bucket with other runs.
func AcceptanceTest(t *testing.T, s tier.Store) {
	t.Helper()
	root := fmt.Sprintf("tiertest-%d-%s/", time.Now().UnixNano(), rand.Text()[:8])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		objs, err := s.List(ctx, root, "", 0)
		if err != nil {
			t.Logf("clean up %s: %v", root, err)
			return
		}
		for _, o := range objs {
			if err := s.Delete(ctx, o.Key); err != nil {
				t.Logf("clean up %s: %v", root, err)
			}
		}
	})
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s tier.Store, prefix string)
	}{
		{"RoundTrip", testRoundTrip},
		{"Ranges", testRanges},
		{"Missing", testMissing},
		{"Replace", testReplace},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfMatch", testPutIfMatch},
		{"List", testList},
		{"Delete", testDelete},
		{"RacingPutIfAbsent", testRacingPutIfAbsent},
		{"RacingIncrements", testRacingIncrements},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, s, root+tc.name+"/") })
	}
}

func testRoundTrip(t *testing.T, s tier.Store, prefix string) {
	binary := make([]byte, 0, 512)
	for i := range 512 {
		binary = append(binary, byte(i))
	}
	large := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"text", []byte("hello, shale")},
		{"binary", binary},
		{"empty", []byte{}},
		{"large", large},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := prefix + tc.name
			put, err := s.Put(t.Context(), key, tc.data)
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if put.Key != key || put.Size != int64(len(tc.data)) || put.ETag == "" {
				t.Errorf("Put attrs = %+v, want key %q, size %d and an ETag", put, key, len(tc.data))
			}
			got, a, err := s.Get(t.Context(), key, 0, -1)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if !bytes.Equal(got, tc.data) {
				t.Errorf("Get returned %d bytes that differ from the %d put", len(got), len(tc.data))
			}
			checkAttrs(t, "Get", a, put)
			h, err := s.Head(t.Context(), key)
			if err != nil {
				t.Fatalf("Head: %v", err)
			}
			checkAttrs(t, "Head", h, put)
			if h.ModTime.IsZero() {
				t.Errorf("Head ModTime is zero")
			}
		})
	}
}

// checkAttrs compares what a read reports with what the write returned.
func checkAttrs(t *testing.T, op string, got, want tier.Attrs) {
	t.Helper()
	if got.Key != want.Key || got.Size != want.Size || got.ETag != want.ETag {
		t.Errorf("%s attrs = {%q size %d etag %q}, want {%q size %d etag %q}",
			op, got.Key, got.Size, got.ETag, want.Key, want.Size, want.ETag)
	}
}

func testRanges(t *testing.T, s tier.Store, prefix string) {
	const digits = "0123456789"
	objs := map[string]string{"digits": digits, "empty": ""}
	attrs := map[string]tier.Attrs{}
	for name, data := range objs {
		a, err := s.Put(t.Context(), prefix+name, []byte(data))
		if err != nil {
			t.Fatalf("Put: %v", err)
		}
		attrs[name] = a
	}
	for _, tc := range []struct {
		name        string
		obj         string
		off, length int64
		want        string
	}{
		{"whole", "digits", 0, -1, digits},
		{"head", "digits", 0, 4, "0123"},
		{"middle", "digits", 3, 4, "3456"},
		{"to end", "digits", 7, -1, "789"},
		{"last byte", "digits", 9, 1, "9"},
		{"zero length", "digits", 3, 0, ""},
		{"length past end", "digits", 8, 10, "89"},
		{"huge length", "digits", 2, math.MaxInt64, "23456789"},
		{"offset at end", "digits", 10, -1, ""},
		{"offset past end", "digits", 20, 5, ""},
		{"empty object", "empty", 0, -1, ""},
		{"empty object past end", "empty", 5, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, a, err := s.Get(t.Context(), prefix+tc.obj, tc.off, tc.length)
			if err != nil {
				t.Fatalf("Get(%d, %d): %v", tc.off, tc.length, err)
			}
			if string(got) != tc.want {
				t.Errorf("Get(%d, %d) = %q, want %q", tc.off, tc.length, got, tc.want)
			}
			// Attrs describe the whole object, not the range.
			checkAttrs(t, "Get", a, attrs[tc.obj])
		})
	}
}

func testMissing(t *testing.T, s tier.Store, prefix string) {
	key := prefix + "nothing"
	if _, _, err := s.Get(t.Context(), key, 0, -1); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("Get of a missing key: %v, want ErrNotFound", err)
	}
	if _, _, err := s.Get(t.Context(), key, 5, 1); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("ranged Get of a missing key: %v, want ErrNotFound", err)
	}
	if _, err := s.Head(t.Context(), key); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("Head of a missing key: %v, want ErrNotFound", err)
	}
	if _, err := s.PutIfMatch(t.Context(), key, []byte("x"), "0123456789abcdef0123456789abcdef"); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("PutIfMatch of a missing key: %v, want ErrNotFound", err)
	}
	if _, err := s.Head(t.Context(), key); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("after a failed PutIfMatch, Head: %v, want ErrNotFound", err)
	}
	if err := s.Delete(t.Context(), key); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
}

func testReplace(t *testing.T, s tier.Store, prefix string) {
	key := prefix + "obj"
	v1 := mustPut(t, s, key, "first version")
	v2 := mustPut(t, s, key, "second, longer version")
	if v2.ETag == v1.ETag {
		t.Errorf("ETag %q did not change when the content was replaced", v1.ETag)
	}
	mustRead(t, s, key, "second, longer version", v2)
}

func testPutIfAbsent(t *testing.T, s tier.Store, prefix string) {
	key := prefix + "obj"
	orig, err := s.PutIfAbsent(t.Context(), key, []byte("original"))
	if err != nil {
		t.Fatalf("PutIfAbsent of a new key: %v", err)
	}
	if _, err := s.PutIfAbsent(t.Context(), key, []byte("usurper")); !errors.Is(err, tier.ErrConflict) {
		t.Errorf("PutIfAbsent of an existing key: %v, want ErrConflict", err)
	}
	mustRead(t, s, key, "original", orig)
}

func testPutIfMatch(t *testing.T, s tier.Store, prefix string) {
	key := prefix + "obj"
	v1 := mustPut(t, s, key, "v1")
	v2, err := s.PutIfMatch(t.Context(), key, []byte("v2"), v1.ETag)
	if err != nil {
		t.Fatalf("PutIfMatch with the current ETag: %v", err)
	}
	if v2.ETag == v1.ETag {
		t.Errorf("ETag %q did not change when PutIfMatch replaced the content", v1.ETag)
	}
	mustRead(t, s, key, "v2", v2)
	if _, err := s.PutIfMatch(t.Context(), key, []byte("v3"), v1.ETag); !errors.Is(err, tier.ErrConflict) {
		t.Errorf("PutIfMatch with a stale ETag: %v, want ErrConflict", err)
	}
	mustRead(t, s, key, "v2", v2)
	v3, err := s.PutIfMatch(t.Context(), key, []byte("v3"), v2.ETag)
	if err != nil {
		t.Fatalf("PutIfMatch with the ETag from the last PutIfMatch: %v", err)
	}
	mustRead(t, s, key, "v3", v3)
}

func testList(t *testing.T, s tier.Store, prefix string) {
	// Byte order differs from a directory walk's: '-' and '.' sort before
	// '/', so "a-b" < "a/b" and "a/c-d" < "a/c/d", while a walk visits the
	// directory "a" before the file "a-b". Keys are written out of order.
	keys := []string{"b", "a/c/e", "a-b", "a/b", "a0", "a/c-d", "a.b", "a/c/d"}
	written := map[string]tier.Attrs{}
	for _, k := range keys {
		written[k] = mustPut(t, s, prefix+k, "data of "+k)
	}
	sorted := slices.Sorted(slices.Values(keys))

	for _, tc := range []struct {
		name               string
		sub, startAfter    string // relative to prefix
		limit              int
		want               []string
		startAfterAbsolute bool // pass startAfter as is, not under prefix
	}{
		{name: "all", want: sorted},
		{name: "prefix dir", sub: "a/", want: []string{"a/b", "a/c-d", "a/c/d", "a/c/e"}},
		{name: "prefix partial name", sub: "a/c", want: []string{"a/c-d", "a/c/d", "a/c/e"}},
		{name: "prefix is a key", sub: "a/b", want: []string{"a/b"}},
		{name: "prefix matches nothing", sub: "zz", want: nil},
		{name: "start after a key", startAfter: "a/c-d", want: []string{"a/c/d", "a/c/e", "a0", "b"}},
		{name: "start after a dir name", startAfter: "a/c", want: []string{"a/c-d", "a/c/d", "a/c/e", "a0", "b"}},
		{name: "start after everything", startAfter: "c", want: nil},
		{name: "limit", limit: 3, want: []string{"a-b", "a.b", "a/b"}},
		{name: "prefix, start and limit", sub: "a/", startAfter: "a/b", limit: 2, want: []string{"a/c-d", "a/c/d"}},
		{name: "start before prefix", sub: "a/c/", startAfter: "a", want: []string{"a/c/d", "a/c/e"}},
		{name: "start after prefix", sub: "a/", startAfter: "a0", want: nil},
		{name: "start before the whole run", startAfter: "", startAfterAbsolute: true, limit: 2, want: []string{"a-b", "a.b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			after := tc.startAfter
			if !tc.startAfterAbsolute {
				after = prefix + after
			}
			got, err := s.List(t.Context(), prefix+tc.sub, after, tc.limit)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			var gotKeys []string
			for _, a := range got {
				k := strings.TrimPrefix(a.Key, prefix)
				gotKeys = append(gotKeys, k)
				if w, ok := written[k]; ok {
					checkAttrs(t, "List", a, w)
				}
			}
			if !slices.Equal(gotKeys, tc.want) {
				t.Errorf("List(%q, %q, %d) = %q, want %q", tc.sub, tc.startAfter, tc.limit, gotKeys, tc.want)
			}
		})
	}

	for page := 1; page <= 3; page++ {
		t.Run(fmt.Sprintf("paging by %d", page), func(t *testing.T) {
			var got []string
			after := ""
			for range len(keys) + 1 {
				batch, err := s.List(t.Context(), prefix, after, page)
				if err != nil {
					t.Fatalf("List: %v", err)
				}
				if len(batch) > page {
					t.Fatalf("List returned %d objects, limit %d", len(batch), page)
				}
				if len(batch) == 0 {
					break
				}
				for _, a := range batch {
					got = append(got, strings.TrimPrefix(a.Key, prefix))
				}
				after = batch[len(batch)-1].Key
			}
			if !slices.Equal(got, sorted) {
				t.Errorf("paged List = %q, want %q", got, sorted)
			}
		})
	}
}

func testDelete(t *testing.T, s tier.Store, prefix string) {
	key := prefix + "dir/obj"
	mustPut(t, s, key, "doomed")
	sibling := mustPut(t, s, prefix+"dir/sibling", "survivor")
	if err := s.Delete(t.Context(), key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, _, err := s.Get(t.Context(), key, 0, -1); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Head(t.Context(), key); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("Head after Delete: %v, want ErrNotFound", err)
	}
	got, err := s.List(t.Context(), prefix, "", 0)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(got) != 1 || got[0].Key != sibling.Key {
		t.Errorf("List after Delete = %v, want only %s", got, sibling.Key)
	}
	if err := s.Delete(t.Context(), key); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	// A deleted key can be created again, conditionally.
	if _, err := s.PutIfAbsent(t.Context(), key, []byte("reborn")); err != nil {
		t.Errorf("PutIfAbsent after Delete: %v", err)
	}
}

func testRacingPutIfAbsent(t *testing.T, s tier.Store, prefix string) {
	const writers = 16
	key := prefix + "contended"
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		mu      sync.Mutex
		winners []string
	)
	for i := range writers {
		wg.Go(func() {
			data := fmt.Sprintf("writer %d", i)
			<-start
			_, err := s.PutIfAbsent(t.Context(), key, []byte(data))
			switch {
			case err == nil:
				mu.Lock()
				winners = append(winners, data)
				mu.Unlock()
			case !errors.Is(err, tier.ErrConflict):
				t.Errorf("PutIfAbsent: %v, want nil or ErrConflict", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d of %d racing PutIfAbsent calls succeeded (%q), want exactly 1", len(winners), writers, winners)
	}
	got, _, err := s.Get(t.Context(), key, 0, -1)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(got) != winners[0] {
		t.Errorf("stored %q, but the winner wrote %q", got, winners[0])
	}
}

func testRacingIncrements(t *testing.T, s tier.Store, prefix string) {
	const (
		workers = 8
		each    = 10
	)
	key := prefix + "counter"
	mustPut(t, s, key, "0")
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if err := Increment(t.Context(), s, key); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, _, err := s.Get(t.Context(), key, 0, -1)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if want := strconv.Itoa(workers * each); string(got) != want {
		t.Errorf("counter = %s after %s increments; PutIfMatch lost updates", got, want)
	}
}

// Increment adds one to the decimal counter stored at key by
// read-modify-write with PutIfMatch, retrying when it loses a race. Tests
// use it to check that PutIfMatch never lets two writers both win.
func Increment(ctx context.Context, s tier.Store, key string) error {
	for {
		data, a, err := s.Get(ctx, key, 0, -1)
		if err != nil {
			return fmt.Errorf("increment %s: %w", key, err)
		}
		n, err := strconv.Atoi(string(data))
		if err != nil {
			return fmt.Errorf("increment %s: %w", key, err)
		}
		_, err = s.PutIfMatch(ctx, key, []byte(strconv.Itoa(n+1)), a.ETag)
		if !errors.Is(err, tier.ErrConflict) {
			if err != nil {
				return fmt.Errorf("increment %s: %w", key, err)
			}
			return nil
		}
	}
}

func mustPut(t *testing.T, s tier.Store, key, data string) tier.Attrs {
	t.Helper()
	a, err := s.Put(t.Context(), key, []byte(data))
	if err != nil {
		t.Fatalf("Put %s: %v", key, err)
	}
	return a
}

// mustRead checks that key holds data with the attributes want.
func mustRead(t *testing.T, s tier.Store, key, data string, want tier.Attrs) {
	t.Helper()
	got, a, err := s.Get(t.Context(), key, 0, -1)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	if string(got) != data {
		t.Errorf("Get %s = %q, want %q", key, got, data)
	}
	checkAttrs(t, "Get", a, want)
}
