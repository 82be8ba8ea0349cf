package tiertest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/tiertest"
)

func TestMemStoreAcceptance(t *testing.T) {
	tiertest.AcceptanceTest(t, tiertest.NewMemStore())
}

// The wrappers pass every call through when they inject nothing, including
// a FaultStore whose rules never fire.
func TestWrappersAcceptance(t *testing.T) {
	t.Run("fault store, no faults", func(t *testing.T) {
		tiertest.AcceptanceTest(t, tiertest.NewFaultStore(tiertest.NewMemStore(), 1))
	})
	t.Run("fault store, zero rates", func(t *testing.T) {
		f := tiertest.NewFaultStore(tiertest.NewMemStore(), 1)
		f.Set(tiertest.Fault{Kind: tiertest.Fail, Rate: 0}, tiertest.Fault{Kind: tiertest.Hang, Rate: 0})
		tiertest.AcceptanceTest(t, f)
	})
	t.Run("fault store, delays only", func(t *testing.T) {
		f := tiertest.NewFaultStore(tiertest.NewMemStore(), 1)
		f.Set(tiertest.Fault{Kind: tiertest.Delay, Rate: 0.5, Delay: time.Millisecond})
		tiertest.AcceptanceTest(t, f)
	})
	t.Run("counting store", func(t *testing.T) {
		tiertest.AcceptanceTest(t, tiertest.NewCountingStore(tiertest.NewMemStore()))
	})
}

func TestMemStoreCopies(t *testing.T) {
	m := tiertest.NewMemStore()
	data := []byte("abc")
	if _, err := m.Put(t.Context(), "k", data); err != nil {
		t.Fatal(err)
	}
	data[0] = 'X' // the caller's buffer is its own after Put
	got, _, err := m.Get(t.Context(), "k", 0, -1)
	if err != nil || string(got) != "abc" {
		t.Fatalf("Get = %q, %v; want abc", got, err)
	}
	got[1] = 'Y' // and so is what Get returned
	if again, _, _ := m.Get(t.Context(), "k", 0, -1); string(again) != "abc" {
		t.Fatalf("Get after changing a returned slice = %q, want abc", again)
	}
}

func TestFaultKinds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  tiertest.Fault
		landed bool // the write reached the store
	}{
		{"fail", tiertest.Fault{Kind: tiertest.Fail, Rate: 1}, false},
		{"ambiguous", tiertest.Fault{Kind: tiertest.Ambiguous, Rate: 1}, true},
		{"other prefix", tiertest.Fault{Kind: tiertest.Fail, Rate: 1, Prefix: "elsewhere/"}, true},
		{"other op", tiertest.Fault{Kind: tiertest.Fail, Rate: 1, Ops: tiertest.OpReads}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := tiertest.NewMemStore()
			f := tiertest.NewFaultStore(mem, 1)
			f.Set(tc.fault)
			_, err := f.PutIfAbsent(t.Context(), "dir/k", []byte("v"))
			hit := tc.fault.Prefix == "" && tc.fault.Ops == 0
			if hit != errors.Is(err, tiertest.ErrInjected) {
				t.Errorf("PutIfAbsent: %v; want an injected error: %v", err, hit)
			}
			if _, herr := mem.Head(t.Context(), "dir/k"); (herr == nil) != tc.landed {
				t.Errorf("after the write the store has the object: %v, want %v", herr == nil, tc.landed)
			}
		})
	}
}

func TestFaultHang(t *testing.T) {
	f := tiertest.NewFaultStore(tiertest.NewMemStore(), 1)
	f.Set(tiertest.Fault{Kind: tiertest.Hang, Rate: 1, Ops: tiertest.OpGet})

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := f.Get(ctx, "k", 0, -1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung Get = %v, want the context's deadline", err)
	}

	// A hang without a deadline ends when the faults are switched off.
	done := make(chan error, 1)
	go func() { _, _, err := f.Get(context.Background(), "k", 0, -1); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("Get returned %v while it should hang", err)
	case <-time.After(50 * time.Millisecond):
	}
	f.Set()
	if err := <-done; !errors.Is(err, tiertest.ErrInjected) {
		t.Fatalf("hang released by Set() = %v, want ErrInjected", err)
	}
	if _, _, err := f.Get(t.Context(), "k", 0, -1); !errors.Is(err, tier.ErrNotFound) {
		t.Fatalf("Get with faults off = %v, want the store's ErrNotFound", err)
	}
	if n := f.Injected(tiertest.Hang); n != 2 {
		t.Errorf("Injected(Hang) = %d, want 2", n)
	}
}

func TestFaultDelay(t *testing.T) {
	f := tiertest.NewFaultStore(tiertest.NewMemStore(), 1)
	f.Set(tiertest.Fault{Kind: tiertest.Delay, Rate: 1, Delay: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	// A delay of up to an hour is cut short by the deadline, and the call
	// is not made.
	if _, err := f.Put(ctx, "k", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delayed Put = %v, want the context's deadline", err)
	}
	f.Set()
	if _, err := f.Head(t.Context(), "k"); !errors.Is(err, tier.ErrNotFound) {
		t.Fatalf("Head = %v: a Put cut short during its delay reached the store", err)
	}
}

// The same seed gives the same decisions; another seed, others.
func TestFaultSeed(t *testing.T) {
	pattern := func(seed uint64) []bool {
		f := tiertest.NewFaultStore(tiertest.NewMemStore(), seed)
		f.Set(tiertest.Fault{Kind: tiertest.Fail, Rate: 0.5})
		var out []bool
		for i := range 64 {
			_, err := f.Head(t.Context(), fmt.Sprint(i))
			out = append(out, errors.Is(err, tiertest.ErrInjected))
		}
		return out
	}
	a, b, c := pattern(7), pattern(7), pattern(8)
	if !slices.Equal(a, b) {
		t.Errorf("seed 7 gave two fault patterns:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 gave the same fault pattern %v", a)
	}
	if n := len(slices.DeleteFunc(slices.Clone(a), func(hit bool) bool { return !hit })); n < 16 || n > 48 {
		t.Errorf("rate 0.5 hit %d of 64 calls", n)
	}
}

func TestCountingStore(t *testing.T) {
	ctx := t.Context()
	c := tiertest.NewCountingStore(tiertest.NewMemStore())
	c.Put(ctx, "data/a.arrow", make([]byte, 100))
	c.Put(ctx, "data/b.arrow", make([]byte, 50))
	c.PutIfAbsent(ctx, "manifest/log/1", make([]byte, 10))
	c.PutIfAbsent(ctx, "manifest/log/1", make([]byte, 10)) // conflicts, still a request
	c.PutIfMatch(ctx, "manifest/checkpoint/latest", []byte("x"), "nope")
	c.Get(ctx, "data/a.arrow", 10, 20)
	c.Get(ctx, "manifest/log/2", 0, -1) // missing
	c.Head(ctx, "data/a.arrow")
	c.List(ctx, "manifest/", "", 0)
	c.Delete(ctx, "data/b.arrow")

	all := c.Counts("")
	if got := all.N(tiertest.OpWrites); got != 5 {
		t.Errorf("writes = %d, want 5", got)
	}
	if got := all.N(tiertest.OpGet); got != 2 {
		t.Errorf("gets = %d, want 2", got)
	}
	if got := all.N(tiertest.OpAll); got != 10 {
		t.Errorf("requests = %d, want 10", got)
	}
	if all.PutBytes != 171 || all.GotBytes != 20 {
		t.Errorf("bytes put, got = %d, %d; want 171, 20", all.PutBytes, all.GotBytes)
	}
	data := c.Counts("data/")
	if data.N(tiertest.OpPut) != 2 || data.PutBytes != 150 {
		t.Errorf("data/ puts = %d of %d bytes, want 2 of 150", data.N(tiertest.OpPut), data.PutBytes)
	}
	m := c.Counts("manifest/")
	if m.N(tiertest.OpPutIfAbsent) != 2 || m.N(tiertest.OpList) != 1 || m.N(tiertest.OpPut) != 0 {
		t.Errorf("manifest/ counts = %+v", m)
	}
	if n := c.Counts("manifest/log/").N(tiertest.OpAll); n != 3 {
		t.Errorf("manifest/log/ requests = %d, want 3", n)
	}
	c.Reset()
	if n := c.Counts("").N(tiertest.OpAll); n != 0 {
		t.Errorf("after Reset: %d requests", n)
	}
}

// Counts are exact under concurrent calls.
func TestCountingStoreConcurrent(t *testing.T) {
	c := tiertest.NewCountingStore(tiertest.NewMemStore())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				c.Put(t.Context(), fmt.Sprintf("d%d/%d", i%2, j), []byte("ab"))
			}
		})
	}
	wg.Wait()
	if got := c.Counts(""); got.N(tiertest.OpPut) != 800 || got.PutBytes != 1600 {
		t.Errorf("counts = %+v, want 800 puts of 1600 bytes", got)
	}
	if got := c.Counts("d1/").N(tiertest.OpPut); got != 400 {
		t.Errorf("d1/ puts = %d, want 400", got)
	}
}

// Times n with rate 1 hits exactly the next n matching calls.
func TestFaultTimes(t *testing.T) {
	f := tiertest.NewFaultStore(tiertest.NewMemStore(), 1)
	f.Set(tiertest.Fault{Kind: tiertest.Ambiguous, Ops: tiertest.OpPutIfAbsent, Rate: 1, Times: 2})
	var got []bool
	for i := range 4 {
		f.Head(t.Context(), "k") // not a matching call
		_, err := f.PutIfAbsent(t.Context(), fmt.Sprint("k", i), nil)
		got = append(got, errors.Is(err, tiertest.ErrInjected))
	}
	if want := []bool{true, true, false, false}; !slices.Equal(got, want) {
		t.Errorf("injected = %v, want %v", got, want)
	}
	// Set starts the count again.
	f.Set(tiertest.Fault{Kind: tiertest.Fail, Rate: 1, Times: 1})
	if _, err := f.Head(t.Context(), "k0"); !errors.Is(err, tiertest.ErrInjected) {
		t.Errorf("first Head after Set = %v, want ErrInjected", err)
	}
	if _, err := f.Head(t.Context(), "k0"); err != nil {
		t.Errorf("second Head after Set = %v, want the object", err)
	}
}

// A late write reports failure at once and lands afterwards, with the
// bytes given at the call even if the caller reuses its buffer.
func TestFaultLate(t *testing.T) {
	mem := tiertest.NewMemStore()
	f := tiertest.NewFaultStore(mem, 1)
	f.Set(tiertest.Fault{Kind: tiertest.Late, Rate: 1, Delay: 20 * time.Millisecond})
	buf := []byte("first")
	if _, err := f.PutIfAbsent(t.Context(), "k", buf); !errors.Is(err, tiertest.ErrInjected) {
		t.Fatalf("late PutIfAbsent = %v, want ErrInjected", err)
	}
	copy(buf, "XXXXX")
	if _, _, err := f.Get(t.Context(), "k", 0, -1); !errors.Is(err, tiertest.ErrInjected) {
		t.Errorf("Get with a late fault = %v, want ErrInjected (a read cannot land late)", err)
	}
	f.Wait()
	got, _, err := mem.Get(t.Context(), "k", 0, -1)
	if err != nil || string(got) != "first" {
		t.Fatalf("after the late write landed: %q, %v; want first", got, err)
	}
	if err := f.Delete(t.Context(), "k"); !errors.Is(err, tiertest.ErrInjected) {
		t.Fatalf("late Delete = %v, want ErrInjected", err)
	}
	f.Wait()
	if _, err := mem.Head(t.Context(), "k"); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("a late Delete did not land: %v", err)
	}
}
