// Package ingest is shale's write path: appends from many partitions go into
// a local hot segment, which rolls into one Arrow object in the store and is
// committed to the manifest log; only then are the appends acknowledged.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/manifest"
	"github.com/shalelog/shale/tier/object"
)

var (
	// ErrBackpressure is returned when an append cannot enter a hot segment
	// before its deadline because every roll is still uploading: the store
	// is slower than the producers.
	ErrBackpressure = errors.New("ingest buffers full: the object store is slower than producers")
	// ErrTooLarge is returned for a batch above Options.MaxBatchBytes.
	ErrTooLarge = errors.New("record batch too large")
	// ErrStore wraps the failure of a roll's upload or commit: the store
	// failed for longer than Options.StoreTimeout. The records' fate is
	// unknown to the producer (a commit may have landed).
	ErrStore = errors.New("object store unavailable")
	// ErrClosed is returned by appends to a closed node.
	ErrClosed = errors.New("ingest node closed")

	// Outcomes of an idempotent producer's batch (AppendProducer), judged
	// by the commit against the state every node shares:
	// ErrOutOfOrderSequence (a gap, or a new epoch not starting at 0),
	// ErrProducerFenced (an older epoch), ErrUnknownProducer (no state for
	// the producer in the partition, expired or never there, and a
	// sequence other than 0; or an id never allocated), and ErrRetry (not
	// committed because another batch of its roll and partition was a
	// duplicate or invalid; nothing was written, send it again).
	ErrOutOfOrderSequence = manifest.ErrOutOfOrderSequence
	ErrProducerFenced     = manifest.ErrProducerFenced
	ErrUnknownProducer    = manifest.ErrUnknownProducer
	ErrRetry              = manifest.ErrRetry
	// ErrInvalidProducer is a Producer with a negative field.
	ErrInvalidProducer = errors.New("invalid producer")
)

// Producer identifies an idempotent producer's batch: the producer id
// (from manifest.Log.ProducerID), its epoch, and the sequence of the
// batch's first record; the record count gives the last (sequences wrap
// from MaxInt32 to 0).
type Producer struct {
	ID    int64
	Epoch int16
	Seq   int32
}

// Options configure a Writer. Zero values take the defaults noted.
type Options struct {
	Dir           string        // hot segment directory, the node's own (openDir); required
	RollBytes     int64         // roll when a segment holds this much, counting its heap (pendingCost); default 16 MiB
	RollAge       time.Duration // roll when a segment's first append is this old; default 250ms
	MaxInflight   int           // rolled segments not yet committed; default 4
	HotBytes      int64         // committed segments kept locally for reads, counting their index heap; default 256 MiB
	MaxBatchBytes int           // largest encoded append; default 8 MiB
	Compression   object.Compression
	Node          string        // node name, part of object keys
	StoreTimeout  time.Duration // how long an upload or commit may retry; default 30s
	Logger        *slog.Logger
	// Hook, if set, is called at each step of a roll: "before-put",
	// "after-put", "after-commit". Crash tests use it to die at a chosen
	// point.
	Hook func(stage string)
}

// DefaultOptions are the defaults of every setting, the one place they
// are written; shale.DefaultOptions builds on them.
func DefaultOptions() Options {
	return Options{
		RollBytes:     16 << 20,
		RollAge:       250 * time.Millisecond,
		MaxInflight:   4,
		HotBytes:      256 << 20,
		MaxBatchBytes: 8 << 20,
		Compression:   object.CompressionLZ4,
		StoreTimeout:  30 * time.Second,
	}
}

// defaults fills zero values from DefaultOptions, so tests can set only
// what they vary.
func (o *Options) defaults() {
	d := DefaultOptions()
	if o.RollBytes <= 0 {
		o.RollBytes = d.RollBytes
	}
	if o.RollAge <= 0 {
		o.RollAge = d.RollAge
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = d.MaxInflight
	}
	if o.HotBytes <= 0 {
		o.HotBytes = d.HotBytes
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = d.MaxBatchBytes
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = d.StoreTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Hook == nil {
		o.Hook = func(string) {}
	}
}

// Writer is one ingest node. Any number of nodes may share a store.
type Writer struct {
	store tier.Store
	log   *manifest.Log
	opts  Options
	lock  *os.File // flock on Dir: one process per hot directory

	mu struct {
		sync.Mutex
		cur      *segment
		queue    []*waiter // writers waiting for room, oldest first
		lastSize int64     // of the last sealed segment
		seq      int
		inflight int           // sealed segments not yet committed
		space    chan struct{} // closed when an inflight slot frees
		closed   bool
		hot      map[string]*segment // committed segments by object key
		hotOrder []*segment          // oldest first, for eviction
		hotBytes int64
	}
	pending   chan *segment // sealed segments in roll order, to the committer
	committed chan struct{} // closed when the committer exits
	closeOnce sync.Once
}

// New starts a node. It takes the hot directory for itself (openDir: a
// new or empty directory, or one it marked before; never a directory
// holding files of others) and discards the segment files a previous
// process left there: uncommitted data was never acknowledged, and
// committed data is in the store.
func New(store tier.Store, log *manifest.Log, opts Options) (*Writer, error) {
	opts.defaults()
	if opts.Dir == "" {
		return nil, errors.New("ingest: hot segment directory not set")
	}
	lock, err := openDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	n := &Writer{
		store:     store,
		log:       log,
		opts:      opts,
		lock:      lock,
		pending:   make(chan *segment, opts.MaxInflight+1),
		committed: make(chan struct{}),
	}
	n.mu.space = make(chan struct{})
	n.mu.hot = map[string]*segment{}
	go n.commitLoop()
	return n, nil
}

type result struct {
	base int64
	err  error
}

// Append adds records to a partition and returns the offset of the first
// once they are committed. Records with a zero timestamp get the current
// time. The returned error says whether the records were rejected
// (ErrUnknownTopic, ErrTooLarge, ErrBackpressure, record.ErrInvalid with
// the index of the first bad record: nothing was written) or
// their fate is unknown (a store failure during the roll: they may or may
// not be committed, as with any Kafka produce that times out). ErrRetry
// (rare) means the records shared their roll's part of the partition with
// an idempotent producer's duplicate or invalid batch, and were not
// committed: nothing was written, sending them again is safe.
func (n *Writer) Append(ctx context.Context, topic string, partition int32, recs []record.Record) (int64, error) {
	a, err := n.Enqueue(ctx, topic, partition, recs, nil)
	if err != nil {
		return 0, err
	}
	return a.Wait(ctx)
}

// AppendProducer is Append for an idempotent producer's batch, committed
// at most once per (producer, partition, epoch, sequence) across every
// node of the bucket: a batch that is one of the producer's last five
// committed batches in the partition is not committed again and returns
// the base offset it got then (whichever node committed it, also after
// that node died before answering). Besides Append's errors it returns
// ErrOutOfOrderSequence, ErrProducerFenced, ErrUnknownProducer, ErrRetry
// and ErrInvalidProducer (see their doc). ErrStore leaves the outcome
// unknown, as for Append: the producer retries the same batch, on any
// node, and gets its offsets either way.
func (n *Writer) AppendProducer(ctx context.Context, topic string, partition int32, recs []record.Record, p Producer) (int64, error) {
	a, err := n.Enqueue(ctx, topic, partition, recs, &p)
	if err != nil {
		return 0, err
	}
	return a.Wait(ctx)
}

// Ack is an append that entered this node's hot segment and waits for its
// commit.
type Ack struct {
	topic     string
	partition int32
	done      chan result
}

// Wait returns the append's base offset once it is committed, or why it
// was not (the errors of Append and AppendProducer). A Wait that ends with
// ctx leaves the append to be committed or not; Wait may be called again.
func (a *Ack) Wait(ctx context.Context) (int64, error) {
	select {
	case r := <-a.done:
		a.done <- r // for a later Wait
		return r.base, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("append to %s/%d: waiting for commit: %w", a.topic, a.partition, ctx.Err())
	}
}

// Enqueue writes an append into this node's hot segment and returns
// without waiting for its commit; prod is an idempotent producer's batch,
// or nil. Appends enter the segment, and are committed, in the order
// Enqueue returns for them, so a front end that pipelines one producer's
// requests (Kafka allows five in flight per connection) calls Enqueue for
// them in request order and waits for the Acks concurrently. The errors
// are those that refuse an append before anything is written.
func (n *Writer) Enqueue(ctx context.Context, topic string, partition int32, recs []record.Record, prod *Producer) (*Ack, error) {
	if len(recs) == 0 {
		return nil, errors.New("append: no records")
	}
	if p := prod; p != nil && (p.ID < 0 || p.Epoch < 0 || p.Seq < 0 || len(recs) > math.MaxInt32) {
		return nil, fmt.Errorf("append to %s/%d: %w: id %d, epoch %d, sequence %d, %d records: want 0 or more and at most 2^31-1 records",
			topic, partition, ErrInvalidProducer, p.ID, p.Epoch, p.Seq, len(recs))
	}
	// TopicPartition catches up with the log once for a partition this
	// node has not seen, so a topic grown on another node takes appends
	// here at once.
	t, err := n.log.TopicPartition(ctx, topic, partition)
	if err != nil {
		return nil, err
	}
	// Check every record against the limits the roll and the readers
	// enforce before anything is written: a record that entered a segment
	// must always be rollable, or its roll would fail for every producer
	// in it.
	if err := record.Validate(topic, recs); err != nil {
		return nil, fmt.Errorf("append to %s/%d: %w", topic, partition, err)
	}
	if prod != nil {
		// A retry of a batch this node knows to be committed is answered
		// at once; one it does not know of yet is judged by the commit.
		b := manifest.ProducerBatch{ID: prod.ID, Epoch: prod.Epoch, FirstSeq: prod.Seq, LastSeq: manifest.LastSeq(prod.Seq, len(recs))}
		if base, ok := n.log.Committed(topic, t.ID, partition, b); ok {
			done := make(chan result, 1)
			done <- result{base: base}
			return &Ack{topic: topic, partition: partition, done: done}, nil
		}
	}
	buf := appendFrame(nil, topic, t.ID, partition, recs, time.Now().UnixMilli(), prod)
	if limit := min(n.opts.MaxBatchBytes, frameHeaderLen+maxFrameLen); len(buf) > limit {
		return nil, fmt.Errorf("%w: %d bytes encoded, the limit is %d", ErrTooLarge, len(buf), limit)
	}
	done := make(chan result, 1)
	if err := n.write(ctx, frameRef{topic: topic, topicID: t.ID, partition: partition, count: len(recs), idem: prod != nil, done: done}, buf); err != nil {
		return nil, err
	}
	return &Ack{topic: topic, partition: partition, done: done}, nil
}

// write puts one frame into the current segment, rolling a full one and
// waiting for an inflight slot if needed. Writers that have to wait are
// served in arrival order, so that under overload every producer sees
// about the same delay instead of some starving.
func (n *Writer) write(ctx context.Context, fr frameRef, buf []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var w *waiter // set once this writer is queued
	for {
		if n.mu.closed {
			n.dequeueLocked(w)
			return ErrClosed
		}
		if w == nil && len(n.mu.queue) > 0 {
			w = n.enqueueLocked() // others wait already: no overtaking
		}
		if w != nil && n.mu.queue[0] != w {
			if err := n.waitLocked(ctx, w, w.turn); err != nil {
				return err
			}
			continue
		}
		s := n.mu.cur
		if s == nil {
			var err error
			if s, err = n.newSegmentLocked(); err != nil {
				n.dequeueLocked(w)
				return err
			}
		}
		// A segment holds one incarnation of each partition: records for a
		// topic that was deleted and re-created while they were in flight
		// go to the next segment, so an object never has two parts for one
		// partition.
		id, seen := s.ids[partKey{fr.topic, fr.partition}]
		cost := pendingCost(len(buf), fr.count, !seen)
		fits := s.cost+cost <= n.opts.RollBytes || len(s.frames) == 0
		if fits && (!seen || id == fr.topicID) {
			fr.off, fr.len = s.size, len(buf)
			if _, err := s.f.WriteAt(buf, s.size); err != nil {
				n.dequeueLocked(w)
				return fmt.Errorf("write hot segment %s: %w", s.path, err)
			}
			s.mem = append(s.mem, buf...)
			s.size += int64(len(buf))
			s.cost += cost
			s.frames = append(s.frames, fr)
			s.ids[partKey{fr.topic, fr.partition}] = fr.topicID
			if len(s.frames) == 1 {
				s.timer = time.AfterFunc(n.opts.RollAge, func() { n.rollDue(s) })
			}
			if s.cost >= n.opts.RollBytes {
				n.sealLocked()
			}
			n.dequeueLocked(w)
			return nil
		}
		if n.sealLocked() {
			continue
		}
		if w == nil {
			w = n.enqueueLocked()
		}
		if err := n.waitLocked(ctx, w, n.mu.space); err != nil {
			return err
		}
	}
}

// pendingCost is what a frame of size bytes and count records adds to a
// segment's cost, counting the partition's own bookkeeping if it is new
// to the segment. A segment rolls when its cost reaches RollBytes, so the
// heap of many tiny frames is bounded as their bytes are.
func pendingCost(size, count int, newPart bool) int64 {
	c := int64(size) + pendingFrameCost + int64(count)*pendingRecordCost
	if newPart {
		c += pendingPartCost
	}
	return c
}

// waiter is a writer queued for room in a segment.
type waiter struct {
	turn chan struct{} // signalled when the waiter becomes the head of the queue
}

func (n *Writer) enqueueLocked() *waiter {
	w := &waiter{turn: make(chan struct{}, 1)}
	n.mu.queue = append(n.mu.queue, w)
	return w
}

// dequeueLocked removes w (if queued) and tells the next waiter it is at
// the head.
func (n *Writer) dequeueLocked(w *waiter) {
	if w == nil {
		return
	}
	i := slices.Index(n.mu.queue, w)
	if i < 0 {
		return
	}
	n.mu.queue = slices.Delete(n.mu.queue, i, i+1)
	if i == 0 && len(n.mu.queue) > 0 {
		select {
		case n.mu.queue[0].turn <- struct{}{}:
		default:
		}
	}
}

// waitLocked waits, with n.mu released, for ch or the end of ctx; on the
// latter it leaves the queue and returns ErrBackpressure.
func (n *Writer) waitLocked(ctx context.Context, w *waiter, ch <-chan struct{}) error {
	n.mu.Unlock()
	var err error
	select {
	case <-ch:
	case <-ctx.Done():
		err = fmt.Errorf("%w (%d rolls uploading): %v", ErrBackpressure, n.opts.MaxInflight, ctx.Err())
	}
	n.mu.Lock()
	if err != nil {
		n.dequeueLocked(w)
	}
	return err
}

func (n *Writer) newSegmentLocked() (*segment, error) {
	n.mu.seq++
	path := segmentFile(n.opts.Dir, n.mu.seq)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create hot segment: %w", err)
	}
	if _, err := f.Write([]byte(segmentMagic)); err != nil {
		f.Close()
		return nil, fmt.Errorf("create hot segment %s: %w", path, err)
	}
	s := &segment{path: path, f: f, size: int64(len(segmentMagic)), cost: int64(len(segmentMagic)), uploaded: make(chan struct{}), ids: map[partKey]string{}}
	// Size the buffer like the previous segment: full rolls under load
	// (no regrowth copies), small ones when rolls are age-triggered.
	s.mem = append(make([]byte, 0, min(n.opts.RollBytes+int64(len(segmentMagic)), 2*n.mu.lastSize+64<<10)), segmentMagic...)
	n.mu.cur = s
	return s, nil
}

// sealLocked hands the current segment to the roll pipeline if it has data
// and an inflight slot is free. It reports whether it did.
func (n *Writer) sealLocked() bool {
	s := n.mu.cur
	if s == nil || len(s.frames) == 0 || n.mu.inflight >= n.opts.MaxInflight {
		return false
	}
	n.mu.inflight++
	n.mu.lastSize = s.size
	n.mu.cur = nil
	s.timer.Stop()
	go n.upload(s)
	n.pending <- s // never blocks: capacity exceeds MaxInflight
	return true
}

// rollDue is the roll-age timer of segment s.
func (n *Writer) rollDue(s *segment) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.cur == s && !n.sealLocked() {
		s.due = true // sealed when a slot frees
	}
}

// Close stops intake, commits what was accepted, and releases the hot
// directory. It is idempotent.
func (n *Writer) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.mu.closed = true // new appends fail from here on
		for n.mu.cur != nil && len(n.mu.cur.frames) > 0 && !n.sealLocked() {
			space := n.mu.space
			n.mu.Unlock()
			<-space
			n.mu.Lock()
		}
		if n.mu.cur != nil {
			n.mu.cur.drop()
			n.mu.cur = nil
		}
		close(n.pending)
		n.mu.Unlock()
		<-n.committed
		n.mu.Lock()
		for _, s := range n.mu.hotOrder {
			s.drop()
		}
		n.mu.hot, n.mu.hotOrder = nil, nil
		n.mu.Unlock()
		n.lock.Close()
	})
	return nil
}
