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

	lru "github.com/hashicorp/golang-lru/v2"

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
	PageEntries     int           // index entries per sealed index page; default 1024; the same on every node
	// MaxPartitions bounds the partitions of all topics together, so that
	// one request cannot make a state (and a checkpoint) no node can
	// load; default DefaultMaxPartitions. CreateTopic checks it; applying
	// a record does not (nodes may be configured differently, and every
	// node must apply the same records the same way).
	MaxPartitions int64
	// StoreTimeout bounds each store call the log makes; default 30s. A
	// call that hangs fails after it and is retried or reported.
	StoreTimeout time.Duration
	// ProducerIDBlock is how many producer ids one commit reserves for
	// this node (ProducerID); default 1000.
	ProducerIDBlock int64
	// Now is the clock commit records are stamped with; default time.Now.
	// Producer state expires by the commit times (docs/design.md).
	Now    func() time.Time
	Logger *slog.Logger
}

const defaultStoreTimeout = 30 * time.Second

// DefaultMaxPartitions is the default bound on a cluster's partitions.
const DefaultMaxPartitions = 100000

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
	// ids is this node's reserved block of producer ids [next, end).
	ids struct {
		sync.Mutex
		next, end int64
	}
	// syncs lets concurrent Sync calls share one catch-up: a caller that
	// arrives while one runs waits for the next (queued), which starts
	// when the running one ends and serves every caller queued for it.
	// Catch-ups run in their own goroutine under the log's lifetime, not
	// under any caller's context, and each store call is bounded by
	// StoreTimeout, so no caller's missing deadline can hang the others.
	syncs struct {
		sync.Mutex
		running, queued *syncRun
		closed          bool
	}
	skipped atomic.Int64                // invalid commit records skipped since Open
	waiters atomic.Int64                // callers in Wait; the poller runs only while there are some
	pages   *lru.Cache[string, []Entry] // index pages read by this node

	checkpointing atomic.Bool // a checkpoint upload is in flight

	life     context.Context // canceled by Close: ends catch-ups and checkpoint uploads
	stopLife context.CancelFunc
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	bg       sync.WaitGroup // catch-up goroutines
	cpWG     sync.WaitGroup // checkpoint uploads, waited for by Close
}

type syncRun struct {
	done chan struct{}
	err  error
}

// ErrClosed is returned by calls on a closed Log.
var ErrClosed = errors.New("commit log closed")

// Open loads the latest valid checkpoint and the log records after it. It
// reads three objects plus the log tail, however long the history.
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
	if opts.MaxPartitions <= 0 {
		opts.MaxPartitions = DefaultMaxPartitions
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = defaultStoreTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ProducerIDBlock <= 0 {
		opts.ProducerIDBlock = 1000
	}
	opts.ProducerIDBlock = min(opts.ProducerIDBlock, maxProducerIDBlock)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Log{store: store, opts: opts, stop: make(chan struct{}), done: make(chan struct{}), pages: newPageCache(),
		commitSem: make(chan struct{}, 1)}
	l.life, l.stopLife = context.WithCancel(context.Background())
	st, err := l.loadCheckpoint(ctx)
	if err != nil {
		l.stopLife()
		return nil, err
	}
	l.mu.state = st
	l.mu.changed = make(chan struct{})
	if err := l.Sync(ctx); err != nil {
		l.closeSyncs()
		return nil, err
	}
	go l.poll()
	return l, nil
}

// call runs one store call with a deadline of StoreTimeout, so a hung
// request fails instead of holding its caller forever.
func call[T any](l *Log, ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.StoreTimeout)
	defer cancel()
	return f(ctx)
}

func (l *Log) get(ctx context.Context, key string) ([]byte, tier.Attrs, error) {
	type res struct {
		data  []byte
		attrs tier.Attrs
	}
	r, err := call(l, ctx, func(ctx context.Context) (res, error) {
		d, a, err := l.store.Get(ctx, key, 0, -1)
		return res{d, a}, err
	})
	return r.data, r.attrs, err
}

// Close stops polling, catch-ups and checkpoint uploads and waits for
// them. It is idempotent.
func (l *Log) Close() error {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		l.cpWG.Wait()
		l.closeSyncs()
	})
	return nil
}

func (l *Log) closeSyncs() {
	l.syncs.Lock()
	l.syncs.closed = true
	l.syncs.Unlock()
	l.stopLife()
	l.bg.Wait()
}

// Seq is the number of the last commit this node has applied.
func (l *Log) Seq() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.state.Seq
}

// Skipped is the number of invalid commit records this node has skipped
// since Open. Every node skips the same records (docs/design.md).
func (l *Log) Skipped() int64 { return l.skipped.Load() }

// Sync applies every commit record written before the call. Concurrent
// callers share one catch-up: a caller that arrives while one runs waits
// for the next. The caller stops waiting when ctx ends; the catch-up goes
// on for the others. At the head a sync costs one GET; behind, records are
// read a few at a time in parallel.
func (l *Log) Sync(ctx context.Context) error {
	l.syncs.Lock()
	if l.syncs.closed {
		l.syncs.Unlock()
		return fmt.Errorf("read commit log: %w", ErrClosed)
	}
	var r *syncRun
	switch {
	case l.syncs.running == nil:
		r = &syncRun{done: make(chan struct{})}
		l.syncs.running = r
		l.bg.Go(func() { l.runSyncs(r) })
	case l.syncs.queued == nil:
		l.syncs.queued = &syncRun{done: make(chan struct{})}
		fallthrough
	default:
		r = l.syncs.queued
	}
	l.syncs.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("read commit log: %w", ctx.Err())
	}
}

// runSyncs runs r, then the catch-up queued meanwhile, until none is.
func (l *Log) runSyncs(r *syncRun) {
	for r != nil {
		if err := l.catchUp(l.life); err != nil {
			r.err = fmt.Errorf("read commit log: %w", err)
		}
		close(r.done)
		l.syncs.Lock()
		r = l.syncs.queued
		l.syncs.running, l.syncs.queued = r, nil
		l.syncs.Unlock()
	}
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
				data, _, err := l.get(ctx, key)
				if err != nil {
					errs[i] = err
					return
				}
				recs[i], errs[i] = decodeCommit(key, data)
			})
		}
		wg.Wait()
		for i := range window {
			var ce *tier.CorruptError
			switch {
			case errors.Is(errs[i], tier.ErrNotFound):
				return nil
			case errors.As(errs[i], &ce):
				l.applyCommit(next+int64(i), nil, errs[i])
			case errs[i] != nil:
				return errs[i]
			default:
				l.applyCommit(next+int64(i), recs[i], nil)
			}
		}
		window = min(2*window, 16)
	}
}

// applyCommit applies commit seq if it is the next one; commits already
// applied (a node's own commit seen again by a concurrent Sync) are
// ignored. A commit that did not decode (bad is its error) or that does
// not fit the state is skipped whole: its number is used up and none of
// its operations applied, the same way on every node.
func (l *Log) applyCommit(seq int64, r *Commit, bad error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.mu.state
	if seq != s.Seq+1 {
		return false
	}
	if bad == nil {
		if err := s.checkCommit(r); err != nil {
			bad = corrupt("commit record", LogKey(seq), err)
		}
	}
	if bad != nil {
		l.skipped.Add(1)
		l.opts.Logger.Error("skipping invalid commit record: none of its operations are applied, on any node", "key", LogKey(seq), "err", bad)
		s.Seq = seq
	} else {
		s.apply(r)
	}
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
// written. A record that would not pass the check every node applies is
// never written: nodes would skip it, and with it this node's work.
func (l *Log) commit(ctx context.Context, build func(s *State, timeMs int64) ([]Op, error)) (*Commit, error) {
	if err := acquire(ctx, l.commitSem); err != nil {
		return nil, fmt.Errorf("commit: waiting for this node's previous commit: %w", err)
	}
	defer func() { <-l.commitSem }()
	id := randomID()
	b := backoff{}
	for {
		var (
			rec *Commit
			err error
		)
		now := l.opts.Now().UnixMilli()
		l.View(func(s *State) {
			var ops []Op
			if ops, err = build(s, now); err != nil || len(ops) == 0 {
				return
			}
			rec = &Commit{Version: commitVersion(ops), Seq: s.Seq + 1, ID: id, Node: l.opts.Node, TimeMs: now, Ops: ops}
			if cerr := s.checkCommit(rec); cerr != nil {
				err = fmt.Errorf("commit: refusing to write an invalid record: %w", cerr)
			}
		})
		if err != nil {
			return nil, err
		}
		if rec == nil {
			return nil, nil
		}
		data, err := json.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("encode commit record: %w", err)
		}
		won, err := l.put(ctx, rec, data)
		if err != nil {
			return nil, err
		}
		if won {
			l.applyCommit(rec.Seq, rec, nil)
			l.maybeCheckpoint(rec.Seq)
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
				return nil, fmt.Errorf("commit: catch up after losing %s: %w", LogKey(rec.Seq), err)
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
		_, err := call(l, ctx, func(ctx context.Context) (tier.Attrs, error) { return l.store.PutIfAbsent(ctx, key, data) })
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

// readID returns the ID of the commit record at key, if there is one. A
// record there that does not decode is another writer's (ours always
// does): found, with an empty ID.
func (l *Log) readID(ctx context.Context, key string) (id string, found bool, err error) {
	data, _, err := l.get(ctx, key)
	if errors.Is(err, tier.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	r, err := decodeCommit(key, data)
	var ce *tier.CorruptError
	if errors.As(err, &ce) {
		return "", true, nil
	}
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

// retry runs f until it succeeds or ctx ends, waiting with backoff between
// attempts; it returns f's last error.
func retry(ctx context.Context, f func() error) error {
	b := backoff{}
	for {
		err := f()
		if err == nil {
			return nil
		}
		if b.wait(ctx) != nil {
			return err
		}
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

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
