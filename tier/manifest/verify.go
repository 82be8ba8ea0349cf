package manifest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shalelog/shale/tier"
)

// Problem is one inconsistency Verify found, in the object named by Key (a
// commit record, checkpoint, index page or data object).
type Problem struct {
	Key  string `json:"key"`
	What string `json:"what"`
}

func (p Problem) String() string { return p.Key + ": " + p.What }

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// SkipObjects leaves out the HEAD of every data object the index
	// references (one request per object).
	SkipObjects bool
	// StoreTimeout bounds each store call; default 30s.
	StoreTimeout time.Duration
	// Parallel is the number of concurrent store calls; default 16.
	Parallel int
}

// Verify checks a bucket's commit log, checkpoints and index pages against
// each other, and the data objects they reference: it replays the whole log
// as a node would (reporting every record nodes skip or stop at), compares
// each checkpoint with the replayed state at its number (reading its pages),
// checks the checkpoint pointer, and HEADs every object the final index
// references to check it exists with the size the index says. It returns
// the problems found, sorted by key; the error is for a store failure that
// kept it from finishing. It only reads.
func Verify(ctx context.Context, store tier.Store, opts VerifyOptions) ([]Problem, error) {
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = 30 * time.Second
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 16
	}
	v := &verifier{store: store, opts: opts, pages: map[string][]Entry{}, differs: map[string]bool{}}
	if err := v.run(ctx); err != nil {
		return nil, err
	}
	slices.SortStableFunc(v.problems, func(a, b Problem) int { return strings.Compare(a.Key, b.Key) })
	return v.problems, nil
}

type verifier struct {
	store    tier.Store
	opts     VerifyOptions
	problems []Problem
	pages    map[string][]Entry // decoded pages by key; nil for a bad one
	differs  map[string]bool    // keys reported for differing from the log
}

func (v *verifier) problem(key, format string, args ...any) {
	v.problems = append(v.problems, Problem{Key: key, What: fmt.Sprintf(format, args...)})
}

func (v *verifier) get(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, v.opts.StoreTimeout)
	defer cancel()
	data, _, err := v.store.Get(ctx, key, 0, -1)
	return data, err
}

func (v *verifier) run(ctx context.Context) error {
	logKeys, err := listKeys(ctx, v.store, logPrefix, v.opts.StoreTimeout)
	if err != nil {
		return err
	}
	// Nodes read records 1, 2, ... until one is missing: a record after a
	// gap is never read, and a key that is not a record number is noise.
	head := int64(0)
	for _, k := range logKeys {
		var seq int64
		if _, err := fmt.Sscanf(k, logPrefix+"%d", &seq); err != nil || LogKey(seq) != k {
			v.problem(k, "not a commit record key (want %s<20-digit number>)", logPrefix)
			continue
		}
		if seq != head+1 {
			v.problem(k, "commit record after a gap: %s is missing, so nodes never read this one", LogKey(head+1))
			break
		}
		head = seq
	}
	cpKeys, err := listKeys(ctx, v.store, checkpointDir, v.opts.StoreTimeout)
	if err != nil {
		return err
	}
	cps := map[int64]string{}
	for _, k := range cpKeys {
		if k == latestKey {
			continue
		}
		seq, ok := parseCheckpointKey(k)
		if !ok {
			v.problem(k, "not a checkpoint key (want %s<20-digit number>.json)", checkpointDir)
			continue
		}
		if seq > head {
			v.problem(k, "checkpoint of commit %d, past the log's last record %d", seq, head)
		}
		cps[seq] = k
	}
	if err := v.checkPointer(ctx, cps, head); err != nil {
		return err
	}
	st, err := v.replay(ctx, head, cps)
	if err != nil {
		return err
	}
	if v.opts.SkipObjects {
		return nil
	}
	return v.checkObjects(ctx, st)
}

func (v *verifier) checkPointer(ctx context.Context, cps map[int64]string, head int64) error {
	data, err := v.get(ctx, latestKey)
	if errors.Is(err, tier.ErrNotFound) {
		if len(cps) > 0 {
			v.problem(latestKey, "missing while %d checkpoints exist: nodes replay the whole log at start", len(cps))
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", latestKey, err)
	}
	var p latestPointer
	if err := json.Unmarshal(data, &p); err != nil || p.Version < 1 || p.Version > FormatVersion || p.Seq < 0 {
		v.problem(latestKey, "invalid checkpoint pointer %q: nodes fall back to an older checkpoint", data)
		return nil
	}
	if _, ok := cps[p.Seq]; !ok {
		v.problem(latestKey, "names checkpoint %d, which does not exist: nodes fall back to an older one", p.Seq)
	}
	if p.Seq > head {
		v.problem(latestKey, "names checkpoint %d, past the log's last record %d", p.Seq, head)
	}
	return nil
}

// replay applies records 1..head as a node does, comparing the state with
// each checkpoint on the way, and returns the final state.
func (v *verifier) replay(ctx context.Context, head int64, cps map[int64]string) (*State, error) {
	st := newState()
	if k, ok := cps[0]; ok {
		v.compare(ctx, k, 0, st)
	}
	for from := int64(1); from <= head; from += int64(v.opts.Parallel) {
		n := min(int64(v.opts.Parallel), head-from+1)
		data := make([][]byte, n)
		var g errgroup.Group
		for i := range n {
			g.Go(func() error {
				var err error
				data[i], err = v.get(ctx, LogKey(from+i))
				if err != nil {
					return fmt.Errorf("read %s: %w", LogKey(from+i), err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		for i := range n {
			seq := from + i
			key := LogKey(seq)
			c, err := decodeCommit(key, data[i])
			if errors.Is(err, errNewerFormat) {
				v.problem(key, "%v: nodes of this version stop here; records after it are not checked", err)
				return st, nil
			}
			if err == nil {
				err = st.checkCommit(c)
			}
			if err != nil {
				v.problem(key, "invalid commit record, skipped by every node: %v", err)
				st.Seq = seq
			} else {
				st.apply(c)
			}
			if k, ok := cps[seq]; ok {
				v.compare(ctx, k, seq, st)
			}
		}
	}
	return st, nil
}

// compare checks checkpoint key against the replayed state at seq, reading
// its pages.
func (v *verifier) compare(ctx context.Context, key string, seq int64, st *State) {
	data, err := v.get(ctx, key)
	if err != nil {
		v.problem(key, "read: %v", err)
		return
	}
	cp, err := decodeCheckpoint(key, seq, data)
	if err != nil {
		v.problem(key, "invalid checkpoint, not loaded by nodes: %v", err)
		return
	}
	for name := range cp.Topics {
		if _, ok := st.Topics[name]; !ok {
			v.problem(key, "has topic %q, which the log does not have at commit %d", name, seq)
		}
	}
	for name, want := range st.Topics {
		got, ok := cp.Topics[name]
		if !ok {
			v.problem(key, "lacks topic %q, which the log has at commit %d", name, seq)
			continue
		}
		if got.Topic != want.Topic {
			v.problem(key, "topic %q is %+v, the log says %+v", name, got.Topic, want.Topic)
			continue
		}
		for i, p := range got.Parts {
			w := want.Parts[i]
			if p.Start != w.Start || p.End != w.End || p.Bytes != w.Bytes {
				v.problem(key, "topic %q partition %d: start %d end %d bytes %d, the log says %d %d %d", name, i, p.Start, p.End, p.Bytes, w.Start, w.End, w.Bytes)
				continue
			}
			all, from, ok := v.expand(ctx, key, p)
			if !ok {
				continue
			}
			if at := firstDifference(all, w.Entries); at >= 0 && !v.differs[from[min(at, len(from)-1)]] {
				v.differs[from[min(at, len(from)-1)]] = true // a page shared by checkpoints is reported once
				v.problem(from[min(at, len(from)-1)], "topic %q partition %d (checkpoint %s): index entry %d (offset %d) differs from the log's", name, i, key, at, offsetAt(w.Entries, at))
			}
		}
	}
}

// expand returns a checkpoint partition's entries, pages read and
// checked, and for each entry the key it came from (a page, or the
// checkpoint); false if a page is bad (the problem is reported on it).
func (v *verifier) expand(ctx context.Context, key string, p *Partition) ([]Entry, []string, bool) {
	var (
		all  []Entry
		from []string
	)
	for _, ref := range p.Pages {
		es, seen := v.pages[ref.Key]
		if !seen {
			es = v.page(ctx, ref)
			v.pages[ref.Key] = es
		}
		if es == nil {
			return nil, nil, false
		}
		all = append(all, es...)
		for range es {
			from = append(from, ref.Key)
		}
	}
	for range p.Entries {
		from = append(from, key)
	}
	if len(from) == 0 {
		from = append(from, key)
	}
	return append(all, p.Entries...), from, true
}

func offsetAt(es []Entry, i int) int64 {
	if i < len(es) {
		return es[i].Base
	}
	if len(es) > 0 {
		return es[len(es)-1].End()
	}
	return 0
}

func (v *verifier) page(ctx context.Context, ref PageRef) []Entry {
	data, err := v.get(ctx, ref.Key)
	if err != nil {
		v.problem(ref.Key, "read index page: %v", err)
		return nil
	}
	es, err := decodePage(ref, data)
	if err != nil {
		v.problem(ref.Key, "%v", err)
		return nil
	}
	maxTs := es[0].MaxTs
	for _, e := range es {
		maxTs = max(maxTs, e.MaxTs)
	}
	if maxTs != ref.MaxTs {
		v.problem(ref.Key, "entries' max timestamp is %d, the checkpoint's reference says %d: time seeks go wrong", maxTs, ref.MaxTs)
	}
	return es
}

// firstDifference returns the index of the first entry that differs, or
// -1 if the lists are equal.
func firstDifference(a, b []Entry) int {
	for i := range min(len(a), len(b)) {
		x, _ := json.Marshal(a[i])
		y, _ := json.Marshal(b[i])
		if string(x) != string(y) {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// checkObjects HEADs every object the final state's index references.
func (v *verifier) checkObjects(ctx context.Context, st *State) error {
	sizes := map[string]int64{}
	var keys []string
	for _, t := range st.Topics {
		for _, p := range t.Parts {
			for _, e := range p.Entries {
				if s, ok := sizes[e.Object]; ok {
					if s != e.ObjectSize {
						v.problem(e.Object, "the index gives it sizes %d and %d", s, e.ObjectSize)
					}
					continue
				}
				sizes[e.Object] = e.ObjectSize
				keys = append(keys, e.Object)
			}
		}
	}
	var (
		mu sync.Mutex
		g  errgroup.Group
	)
	g.SetLimit(v.opts.Parallel)
	for _, k := range keys {
		g.Go(func() error {
			hctx, cancel := context.WithTimeout(ctx, v.opts.StoreTimeout)
			defer cancel()
			a, err := v.store.Head(hctx, k)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, tier.ErrNotFound):
				v.problem(k, "missing: the index references it")
			case err != nil:
				return fmt.Errorf("head %s: %w", k, err)
			case a.Size != sizes[k]:
				v.problem(k, "%d bytes, the index says %d", a.Size, sizes[k])
			}
			return nil
		})
	}
	return g.Wait()
}
