package tiertest

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shalelog/shale/tier"
)

// Op is a set of tier.Store operations, for choosing which calls a fault
// applies to and for reading counts.
type Op uint16

const (
	OpPut Op = 1 << iota
	OpPutIfAbsent
	OpPutIfMatch
	OpGet
	OpHead
	OpList
	OpDelete

	// OpWrites are the operations that write an object.
	OpWrites = OpPut | OpPutIfAbsent | OpPutIfMatch
	// OpReads are the operations that read.
	OpReads = OpGet | OpHead | OpList
	// OpAll is every operation.
	OpAll = OpWrites | OpReads | OpDelete
)

const numOps = 7

var opNames = [numOps]string{"put", "put if absent", "put if match", "get", "head", "list", "delete"}

// index returns the position of a single operation in [0, numOps).
func (o Op) index() int { return bits.TrailingZeros16(uint16(o)) }

func (o Op) String() string {
	var names []string
	for i := range numOps {
		if o&(1<<i) != 0 {
			names = append(names, opNames[i])
		}
	}
	return strings.Join(names, "|")
}

// ErrInjected is the error a FaultStore returns for a fault it injected. It
// is not a tier sentinel, so callers treat it as they would a network
// failure: the call may or may not have taken effect.
var ErrInjected = errors.New("injected store fault")

// FaultKind is what a fault does to a call.
type FaultKind int

const (
	// Fail returns ErrInjected without calling the store.
	Fail FaultKind = iota
	// Delay waits a random time up to Fault.Delay (or until the call's
	// context ends), then makes the call.
	Delay
	// Hang blocks until the call's context ends, as a connection that
	// stopped answering does, then returns the context's error. A hang also
	// ends, with ErrInjected, when the store's faults are next changed: a
	// test that switches faults off gets a store that has recovered, not
	// calls that stay stuck for the rest of their (possibly long) deadlines.
	Hang
	// Ambiguous makes the call, then returns ErrInjected whatever the
	// store answered: a write that landed but whose response was lost.
	Ambiguous
	// Late returns ErrInjected at once and makes a write (or delete) in
	// the background a random time up to Fault.Delay later: a request the
	// client gave up on that the server still carries out, so a retry can
	// meet the first attempt landing after it. On reads it is Fail.
	Late
)

const numKinds = 5

func (k FaultKind) String() string {
	switch k {
	case Fail:
		return "fail"
	case Delay:
		return "delay"
	case Hang:
		return "hang"
	case Ambiguous:
		return "ambiguous"
	case Late:
		return "late"
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// Fault is one rule of a FaultStore: each call it matches is hit with
// probability Rate.
type Fault struct {
	Kind FaultKind
	// Ops are the operations it applies to; zero means all.
	Ops Op
	// Prefix limits it to keys starting with Prefix (for List, the listed
	// prefix); "" matches every key.
	Prefix string
	// Rate is the probability, in [0, 1], that a matching call is hit.
	Rate float64
	// Delay is the longest wait a Delay fault adds, or a Late write waits
	// before it lands; each hit waits a uniformly random time up to it.
	Delay time.Duration
	// Times, if positive, retires the rule after that many hits: with
	// Rate 1, Times n hits exactly the next n matching calls.
	Times int

	hits int // counted by the FaultStore on its own copy
}

func (f *Fault) matches(op Op, key string) bool {
	return (f.Ops == 0 || f.Ops&op != 0) && strings.HasPrefix(key, f.Prefix)
}

// FaultStore wraps a tier.Store and injects the faults it is given:
// errors before the call, latency, hangs, ambiguous writes that land but
// report failure, and writes that report failure and land later. Faults can be changed at any time, so a test can run
// a store that fails and then recovers.
//
// Decisions are drawn from a random source seeded by the caller, so the
// sequence of decisions is the same for the same seed; which call meets
// which decision still depends on the order concurrent callers arrive in.
// With no faults set it passes every call through and passes
// AcceptanceTest.
type FaultStore struct {
	tier.Store

	mu struct {
		sync.Mutex
		rng     *rand.Rand
		faults  []Fault
		changed chan struct{} // closed when faults change, ending hangs
	}
	injected [numKinds]atomic.Int64 // by FaultKind
	late     sync.WaitGroup         // writes landing late
}

// NewFaultStore returns s with no faults, drawing its decisions from seed.
func NewFaultStore(s tier.Store, seed uint64) *FaultStore {
	f := &FaultStore{Store: s}
	f.mu.rng = rand.New(rand.NewPCG(seed, seed^0x5ca1ab1e))
	f.mu.changed = make(chan struct{})
	return f
}

// Set replaces the store's faults; Set() with none switches injection off.
// Calls hanging at the time return ErrInjected.
func (f *FaultStore) Set(faults ...Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.faults = append([]Fault(nil), faults...)
	close(f.mu.changed)
	f.mu.changed = make(chan struct{})
}

// Wait waits for the late writes already started to land.
func (f *FaultStore) Wait() { f.late.Wait() }

// Injected returns how many calls a fault of kind k has hit.
func (f *FaultStore) Injected(k FaultKind) int64 { return f.injected[k].Load() }

// effect is what the faults decided for one call.
type effect struct {
	delay     time.Duration
	fail      bool
	hang      bool
	ambiguous bool
	late      bool
	lateDelay time.Duration
	changed   <-chan struct{}
}

func (f *FaultStore) decide(op Op, key string) effect {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := effect{changed: f.mu.changed}
	for i := range f.mu.faults {
		r := &f.mu.faults[i]
		// Every matching rule draws, hit or not, so that one rule's
		// outcome does not shift the decisions of the next.
		if !r.matches(op, key) || f.mu.rng.Float64() >= r.Rate {
			continue
		}
		if r.Times > 0 {
			if r.hits >= r.Times {
				continue
			}
			r.hits++
		}
		f.injected[r.Kind].Add(1)
		switch r.Kind {
		case Fail:
			e.fail = true
		case Delay:
			if r.Delay > 0 {
				e.delay += time.Duration(f.mu.rng.Int64N(int64(r.Delay) + 1))
			}
		case Hang:
			e.hang = true
		case Ambiguous:
			e.ambiguous = true
		case Late:
			e.late = true
			if r.Delay > 0 {
				e.lateDelay = time.Duration(f.mu.rng.Int64N(int64(r.Delay) + 1))
			}
		}
	}
	return e
}

// before applies the faults that act before the call; a non-nil error
// ends the call there.
func (e *effect) before(ctx context.Context, op Op, key string) error {
	if e.delay > 0 {
		t := time.NewTimer(e.delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s %s: %w", op, key, ctx.Err())
		}
	}
	if e.hang {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s %s: hung: %w", op, key, ctx.Err())
		case <-e.changed:
			return fmt.Errorf("%s %s: hung until faults changed: %w", op, key, ErrInjected)
		}
	}
	if e.fail || (e.late && op&(OpWrites|OpDelete) == 0) {
		return fmt.Errorf("%s %s: %w", op, key, ErrInjected)
	}
	return nil
}

// landLate makes call in the background after the effect's delay, with a
// context that outlives the caller's, and returns the error the caller
// sees meanwhile.
func (f *FaultStore) landLate(ctx context.Context, e *effect, op Op, key string, call func(context.Context)) error {
	ctx = context.WithoutCancel(ctx)
	f.late.Go(func() {
		time.Sleep(e.lateDelay)
		call(ctx)
	})
	return fmt.Errorf("%s %s: no response (the request is still on its way): %w", op, key, ErrInjected)
}

// after turns the store's answer into an error if the call was ambiguous.
func (e *effect) after(op Op, key string, err error) error {
	if e.ambiguous {
		return fmt.Errorf("%s %s: response lost (the store answered %v): %w", op, key, err, ErrInjected)
	}
	return err
}

func (f *FaultStore) Put(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	return f.write(ctx, OpPut, key, data, func(ctx context.Context, data []byte) (tier.Attrs, error) {
		return f.Store.Put(ctx, key, data)
	})
}

func (f *FaultStore) PutIfAbsent(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	return f.write(ctx, OpPutIfAbsent, key, data, func(ctx context.Context, data []byte) (tier.Attrs, error) {
		return f.Store.PutIfAbsent(ctx, key, data)
	})
}

func (f *FaultStore) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (tier.Attrs, error) {
	return f.write(ctx, OpPutIfMatch, key, data, func(ctx context.Context, data []byte) (tier.Attrs, error) {
		return f.Store.PutIfMatch(ctx, key, data, etag)
	})
}

func (f *FaultStore) write(ctx context.Context, op Op, key string, data []byte, put func(context.Context, []byte) (tier.Attrs, error)) (tier.Attrs, error) {
	e := f.decide(op, key)
	if err := e.before(ctx, op, key); err != nil {
		return tier.Attrs{}, err
	}
	if e.late {
		data = slices.Clone(data) // the caller may reuse its buffer once we return
		return tier.Attrs{}, f.landLate(ctx, &e, op, key, func(ctx context.Context) { put(ctx, data) })
	}
	a, err := put(ctx, data)
	if err = e.after(op, key, err); err != nil {
		return tier.Attrs{}, err
	}
	return a, nil
}

func (f *FaultStore) Get(ctx context.Context, key string, off, length int64) ([]byte, tier.Attrs, error) {
	e := f.decide(OpGet, key)
	if err := e.before(ctx, OpGet, key); err != nil {
		return nil, tier.Attrs{}, err
	}
	data, a, err := f.Store.Get(ctx, key, off, length)
	if err = e.after(OpGet, key, err); err != nil {
		return nil, tier.Attrs{}, err
	}
	return data, a, nil
}

func (f *FaultStore) Head(ctx context.Context, key string) (tier.Attrs, error) {
	e := f.decide(OpHead, key)
	if err := e.before(ctx, OpHead, key); err != nil {
		return tier.Attrs{}, err
	}
	a, err := f.Store.Head(ctx, key)
	if err = e.after(OpHead, key, err); err != nil {
		return tier.Attrs{}, err
	}
	return a, nil
}

func (f *FaultStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]tier.Attrs, error) {
	e := f.decide(OpList, prefix)
	if err := e.before(ctx, OpList, prefix); err != nil {
		return nil, err
	}
	out, err := f.Store.List(ctx, prefix, startAfter, limit)
	if err = e.after(OpList, prefix, err); err != nil {
		return nil, err
	}
	return out, nil
}

func (f *FaultStore) Delete(ctx context.Context, key string) error {
	e := f.decide(OpDelete, key)
	if err := e.before(ctx, OpDelete, key); err != nil {
		return err
	}
	if e.late {
		return f.landLate(ctx, &e, OpDelete, key, func(ctx context.Context) { f.Store.Delete(ctx, key) })
	}
	return e.after(OpDelete, key, f.Store.Delete(ctx, key))
}
