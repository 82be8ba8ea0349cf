package manifest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/errgroup"

	"github.com/shalelog/shale/tier"
)

const (
	logPrefix     = "manifest/log/"
	checkpointDir = "manifest/checkpoint/"
	latestKey     = checkpointDir + "latest"
)

// LogKey is the key of commit record seq.
func LogKey(seq int64) string { return fmt.Sprintf("%s%020d", logPrefix, seq) }

func checkpointKey(seq int64) string { return fmt.Sprintf("%s%020d.json", checkpointDir, seq) }

// Options configure a Log.
type Options struct {
	Node            string        // written into commit records, for debugging
	CheckpointEvery int64         // write a checkpoint every this many commits; default 256
	PollInterval    time.Duration // how often to look for other nodes' commits while someone waits; default 100ms
	PageEntries     int           // index entries per sealed index page; default 1024
	Logger          *slog.Logger
}

// Log is a node's view of the commit log. It is safe for concurrent use.
type Log struct {
	store tier.Store
	opts  Options

	mu struct {
		sync.Mutex
		state   *State
		changed chan struct{} // closed when state advances
	}
	commitSem chan struct{} // one commit in flight per node
	syncSem   chan struct{} // one catch-up in flight per node
	// Syncs started and completed (by generation), so that concurrent
	// Sync calls share one catch-up.
	syncStarted, syncDone atomic.Int64
	waiters               atomic.Int64
	pages                 *lru.Cache[string, []Entry] // index pages read by this node

	checkpointing atomic.Bool // a checkpoint upload is in flight

	stop chan struct{}
	done chan struct{}
	once sync.Once
	cpWG sync.WaitGroup
}

// Open loads the latest checkpoint and the log records after it. It reads
// three objects plus the log tail, however long the history.
func Open(ctx context.Context, store tier.Store, opts Options) (*Log, error) {
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = 256
	}
	if opts.PageEntries <= 0 {
		opts.PageEntries = 1024
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &Log{store: store, opts: opts, stop: make(chan struct{}), done: make(chan struct{}), pages: newPageCache(),
		commitSem: make(chan struct{}, 1), syncSem: make(chan struct{}, 1)}
	st, err := loadCheckpoint(ctx, store)
	if err != nil {
		return nil, err
	}
	l.mu.state = st
	l.mu.changed = make(chan struct{})
	if err := l.Sync(ctx); err != nil {
		return nil, err
	}
	go l.poll()
	return l, nil
}

func loadCheckpoint(ctx context.Context, store tier.Store) (*State, error) {
	data, _, err := store.Get(ctx, latestKey, 0, -1)
	if errors.Is(err, tier.ErrNotFound) {
		return newState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", latestKey, err)
	}
	var p latestPointer
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("decode %s: %w", latestKey, err)
	}
	key := checkpointKey(p.Seq)
	data, _, err = store.Get(ctx, key, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint %s: %w", key, err)
	}
	var cp checkpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		return nil, fmt.Errorf("decode checkpoint %s: %w", key, err)
	}
	if cp.Version < 1 || cp.Version > FormatVersion || cp.State == nil {
		return nil, fmt.Errorf("decode checkpoint %s: format version %d not supported", key, cp.Version)
	}
	if cp.State.Topics == nil {
		cp.State.Topics = map[string]*TopicState{}
	}
	return cp.State, nil
}

// Close stops polling and waits for checkpoint uploads. It is idempotent.
func (l *Log) Close() error {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		l.cpWG.Wait()
	})
	return nil
}

// Seq is the number of the last commit this node has applied.
func (l *Log) Seq() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.state.Seq
}

// Sync applies every commit record written before the call. Concurrent
// callers share one catch-up: a caller that waited while another's sync
// ran from start to finish after it arrived is done. At the head a sync
// costs one GET; behind, records are read a few at a time in parallel.
func (l *Log) Sync(ctx context.Context) error {
	arrived := l.syncStarted.Load()
	if err := acquire(ctx, l.syncSem); err != nil {
		return fmt.Errorf("read commit log: %w", err)
	}
	defer func() { <-l.syncSem }()
	if l.syncDone.Load() > arrived {
		return nil
	}
	gen := l.syncStarted.Add(1)
	err := l.catchUp(ctx)
	if err == nil {
		l.syncDone.Store(gen)
	}
	return err
}

func (l *Log) catchUp(ctx context.Context) error {
	window := 1
	for {
		next := l.Seq() + 1
		recs := make([]*Commit, window)
		errs := make([]error, window)
		var wg sync.WaitGroup
		for i := range window {
			wg.Go(func() {
				key := LogKey(next + int64(i))
				data, _, err := l.store.Get(ctx, key, 0, -1)
				if err != nil {
					errs[i] = err
					return
				}
				recs[i], errs[i] = decodeCommit(key, data)
			})
		}
		wg.Wait()
		for i := range window {
			if errors.Is(errs[i], tier.ErrNotFound) {
				return nil
			}
			if errs[i] != nil {
				return fmt.Errorf("read commit log: %w", errs[i])
			}
			l.applyCommit(recs[i])
		}
		window = min(2*window, 16)
	}
}

// applyCommit applies r if it is the next record; records already applied
// (a node's own commit seen again by a concurrent Sync) are ignored.
func (l *Log) applyCommit(r *Commit) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.Seq != l.mu.state.Seq+1 {
		return false
	}
	l.mu.state.apply(r)
	close(l.mu.changed)
	l.mu.changed = make(chan struct{})
	return true
}

// poll follows other nodes' commits while someone waits for them.
func (l *Log) poll() {
	defer close(l.done)
	t := time.NewTicker(l.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		if l.waiters.Load() == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*l.opts.PollInterval+5*time.Second)
		if err := l.Sync(ctx); err != nil {
			l.opts.Logger.Warn("follow commit log", "err", err)
		}
		cancel()
	}
}

// Wait blocks until cond holds on the state, ctx is done, or the log is
// closed, following other nodes' commits meanwhile. cond runs with the state
// locked and must not block.
func (l *Log) Wait(ctx context.Context, cond func(*State) bool) bool {
	l.waiters.Add(1)
	defer l.waiters.Add(-1)
	for {
		l.mu.Lock()
		ok, ch := cond(l.mu.state), l.mu.changed
		l.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-l.stop:
			return false
		}
	}
}

// View runs f with the state locked. f must not block or keep references
// to the state's slices beyond its return unless it copies them.
func (l *Log) View(f func(*State)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l.mu.state)
}

// commit appends one record built from the latest state. build may be
// called several times, once per attempt, and returns the operations to
// write (or an error, which ends the commit). It returns the record as
// written.
func (l *Log) commit(ctx context.Context, build func(*State) ([]Op, error)) (*Commit, error) {
	if err := acquire(ctx, l.commitSem); err != nil {
		return nil, fmt.Errorf("commit: waiting for this node's previous commit: %w", err)
	}
	defer func() { <-l.commitSem }()
	id := randomID()
	b := backoff{}
	for {
		var (
			ops []Op
			seq int64
			err error
		)
		l.View(func(s *State) {
			seq = s.Seq + 1
			ops, err = build(s)
		})
		if err != nil {
			return nil, err
		}
		if len(ops) == 0 {
			return nil, nil
		}
		rec := &Commit{Version: FormatVersion, Seq: seq, ID: id, Node: l.opts.Node, TimeMs: time.Now().UnixMilli(), Ops: ops}
		data, err := json.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("encode commit record: %w", err)
		}
		won, err := l.put(ctx, rec, data)
		if err != nil {
			return nil, err
		}
		if won {
			l.applyCommit(rec)
			l.maybeCheckpoint(seq)
			return rec, nil
		}
		// Another node took seq (put read its record there, so ours can
		// never land at seq): learn what it wrote and build again. A store
		// failing meanwhile is retried until ctx ends.
		for {
			err := l.Sync(ctx)
			if err == nil {
				break
			}
			if werr := b.wait(ctx); werr != nil {
				return nil, fmt.Errorf("commit: catch up after losing %s: %w", LogKey(seq), err)
			}
		}
	}
}

// put writes rec at its number and reports whether it won. Only reading
// the number back decides: a write that failed (network error) may have
// landed, and a conflict with nothing to read yet means a competing write
// (ours or another node's) is still in flight. The record's random ID says
// whose it is; with nothing there yet, writing again is safe, since every
// attempt writes the same record. put returns false only after reading
// another node's record at rec.Seq, so a lost record can never land later.
func (l *Log) put(ctx context.Context, rec *Commit, data []byte) (bool, error) {
	key := LogKey(rec.Seq)
	b := backoff{}
	for {
		_, err := l.store.PutIfAbsent(ctx, key, data)
		if err == nil {
			return true, nil
		}
		id, found, rerr := l.readID(ctx, key)
		if rerr == nil && found {
			return id == rec.ID, nil
		}
		if werr := b.wait(ctx); werr != nil {
			return false, fmt.Errorf("commit %s: outcome unknown: %w", key, errors.Join(err, rerr))
		}
	}
}

// readID returns the ID of the commit record at key, if there is one.
func (l *Log) readID(ctx context.Context, key string) (id string, found bool, err error) {
	data, _, err := l.store.Get(ctx, key, 0, -1)
	if errors.Is(err, tier.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	r, err := decodeCommit(key, data)
	if err != nil {
		return "", false, err
	}
	return r.ID, true, nil
}

// backoff waits increasingly long between retries, up to a second.
type backoff struct{ d time.Duration }

func (b *backoff) wait(ctx context.Context) error {
	b.d = min(max(2*b.d, 20*time.Millisecond), time.Second)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(b.d):
		return nil
	}
}

// acquire takes a one-slot semaphore, or gives up when ctx ends.
func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// maybeCheckpoint writes a checkpoint of the state at seq, in the
// background, when seq is a multiple of CheckpointEvery. Only the writer of
// that commit does it; if it dies first, the next multiple will. Index
// pages are written first, the checkpoint that references them next, the
// pointer to the checkpoint last.
func (l *Log) maybeCheckpoint(seq int64) {
	if seq%l.opts.CheckpointEvery != 0 || !l.checkpointing.CompareAndSwap(false, true) {
		return // not due, or the previous one is still being written: the next multiple will do
	}
	var (
		snap  *State
		pages []sealed
	)
	l.View(func(s *State) {
		if s.Seq == seq {
			snap, pages = snapshotSealed(s, l.opts.PageEntries)
		}
	})
	if snap == nil {
		l.checkpointing.Store(false)
		return
	}
	l.cpWG.Go(func() {
		defer l.checkpointing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := l.writeCheckpoint(ctx, snap, pages); err != nil {
			l.opts.Logger.Error("write checkpoint: nodes will replay more of the log at start until one succeeds", "seq", seq, "err", err)
			return
		}
		l.View(func(s *State) { trimSealed(s, pages) })
	})
}

func (l *Log) writeCheckpoint(ctx context.Context, snap *State, pages []sealed) error {
	// Page content is a function of the log, so a concurrent or repeated
	// write of the same key writes the same bytes.
	var g errgroup.Group
	g.SetLimit(16)
	for _, pg := range pages {
		g.Go(func() error {
			data, err := json.Marshal(page{Version: FormatVersion, Entries: pg.entries})
			if err != nil {
				return err
			}
			if _, err := l.store.Put(ctx, pg.ref.Key, data); err != nil {
				return fmt.Errorf("write index page: %w", err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	data, err := json.Marshal(checkpoint{Version: FormatVersion, State: snap})
	if err != nil {
		return err
	}
	seq := snap.Seq
	if _, err := l.store.Put(ctx, checkpointKey(seq), data); err != nil {
		return err
	}
	ptr, _ := json.Marshal(latestPointer{Version: FormatVersion, Seq: seq})
	for {
		old, attrs, err := l.store.Get(ctx, latestKey, 0, -1)
		if errors.Is(err, tier.ErrNotFound) {
			_, err = l.store.PutIfAbsent(ctx, latestKey, ptr)
		} else if err == nil {
			var p latestPointer
			if json.Unmarshal(old, &p) == nil && p.Seq >= seq {
				return nil // never move the pointer backwards
			}
			_, err = l.store.PutIfMatch(ctx, latestKey, ptr, attrs.ETag)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, tier.ErrConflict) && !errors.Is(err, tier.ErrNotFound) {
			return err
		}
	}
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
