package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/manifest"
	"github.com/shalelog/shale/tier/object"
)

// segment is one hot segment file through its life: filling (Writer.mu.cur),
// sealed and uploading, committed and held for reads, dropped.
type segment struct {
	path   string
	f      *os.File
	size   int64 // file bytes
	cost   int64 // size plus the heap its bookkeeping and roll take (pendingCost)
	frames []frameRef
	ids    map[partKey]string // topic incarnation of each partition in the segment
	// mem is the file's bytes, kept until the upload so that a roll never
	// reads its own file back: (MaxInflight+1) × RollBytes at most.
	mem   []byte
	timer *time.Timer
	due   bool // the roll age passed while no inflight slot was free

	// Set by upload before uploaded is closed.
	uploaded  chan struct{}
	obj       manifest.PendingObject
	uploadErr error

	// Set by the committer once committed; read by HotRecords. The
	// frames, ids and pending object are dropped then: a held segment
	// keeps only this compact index.
	readMu sync.RWMutex            // held for reading the file; Lock to close it
	parts  map[partKey][]heldFrame // frames of each partition, in order
	held   int64                   // size plus the heap of parts (heldCost)
	closed bool
}

// heldFrame locates a committed frame in its segment file.
type heldFrame struct {
	off   int64
	len   int
	delta int64 // offset_delta of its first record within the part
	count int
}

// Heap accounting. A segment is charged for more than its file bytes, so
// that many tiny frames roll and are evicted as early as their heap
// requires, not only their bytes. The charges are upper bounds of what
// TestHeldSegmentHeap measures (docs/design.md, "Memory of hot segments"):
//
//   - pendingFrameCost: a frame from Append to its commit: its frameRef in
//     the segment's slice (with growth slack) and its result channel
//     (measured: 335 B with the partition's ids entry).
//   - pendingRecordCost: a record during the roll, decoded into a
//     record.Record (88 B) and copied into the encoder's columns.
//   - pendingPartCost: a partition in a filling or rolling segment: its
//     ids entry, and in the roll its object part, which is at least one
//     Arrow record batch (the encoder reserves 2 KiB of object per batch),
//     its index entry and its part of the commit record.
//   - heldFrameCost, heldPartCost: a committed segment's index entries
//     (measured: 123 B for a partition with one frame).
const (
	pendingFrameCost  = 512
	pendingRecordCost = 160
	pendingPartCost   = 4096
	heldFrameCost     = 64
	heldPartCost      = 192
)

// maxHotSegments bounds the committed segments a node holds (and so its
// open files) when rolls are small.
const maxHotSegments = 256

type partKey struct {
	topic     string
	partition int32
}

// frameRef locates one append's frame in its segment.
type frameRef struct {
	topic     string
	topicID   string
	partition int32
	count     int
	off       int64
	len       int
	part      int   // index of its part in segment.obj.Parts
	delta     int64 // offset_delta of its first record within the part
	idem      bool  // an idempotent producer's batch
	pidx      int   // if idem: index of its batch in the part's Producers
	err       error // set by the roll when this frame alone is refused
	done      chan result
}

func (s *segment) drop() {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if !s.closed {
		s.closed = true
		s.f.Close()
		os.Remove(s.path)
	}
}

// upload turns a sealed segment into one Arrow object in the store.
func (n *Writer) upload(s *segment) {
	defer close(s.uploaded)
	n.opts.Hook("before-put")
	data := s.mem
	s.mem = nil // the encoded object replaces it; the file serves reads
	// Group frames into one part per (topic incarnation, partition), in
	// order of first appearance; within a part, in append order. Each
	// frame is decoded and checked on its own: Append checked its records
	// already, but if a frame is bad after all (a bug, or memory gone bad)
	// only its producer fails and the rest of the roll is committed, since
	// one bad producer must never cost every other producer its data.
	type pk struct {
		topic, id string
		partition int32
	}
	index := map[pk]int{}
	var parts []object.Part
	var ids []string
	var prods [][]manifest.ProducerBatch // per part
	for i := range s.frames {
		fr := &s.frames[i]
		f, err := n.rollFrame(s, data, fr)
		if err != nil {
			n.opts.Logger.Error("roll drops a bad frame", "segment", s.path, "offset", fr.off, "topic", fr.topic, "partition", fr.partition, "err", err)
			fr.err = err
			continue
		}
		k := pk{f.Topic, f.TopicID, f.Partition}
		j, ok := index[k]
		if !ok {
			j = len(parts)
			index[k] = j
			parts = append(parts, object.Part{Topic: f.Topic, Partition: f.Partition})
			ids = append(ids, f.TopicID)
			prods = append(prods, nil)
		}
		fr.part = j
		fr.delta = int64(len(parts[j].Records))
		if p := f.Producer; p != nil {
			fr.pidx = len(prods[j])
			prods[j] = append(prods[j], manifest.ProducerBatch{ID: p.ID, Epoch: p.Epoch, FirstSeq: p.Seq,
				LastSeq: manifest.LastSeq(p.Seq, len(f.Records)), Delta: fr.delta})
		}
		parts[j].Records = append(parts[j].Records, f.Records...)
	}
	if len(parts) == 0 {
		return // every frame was bad: nothing to upload or commit
	}
	body, idx, err := object.Encode(parts, n.opts.Compression)
	if err != nil {
		s.uploadErr = err
		return
	}
	key := n.objectKey()
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.StoreTimeout)
	defer cancel()
	if err := retry(ctx, func() error { _, err := n.store.Put(ctx, key, body); return err }); err != nil {
		s.uploadErr = fmt.Errorf("%w: upload %s: %w", ErrStore, key, err)
		return
	}
	n.opts.Hook("after-put")
	s.obj = manifest.PendingObject{Key: key, Size: int64(len(body)), Parts: make([]manifest.PendingPart, len(idx))}
	for i, p := range idx {
		s.obj.Parts[i] = manifest.PendingPart{
			Topic: p.Topic, TopicID: ids[i], Partition: p.Partition,
			Span:      manifest.Span{Count: p.Count, MinTs: p.MinTimestamp, MaxTs: p.MaxTimestamp, Bytes: p.Bytes, Batches: p.Batches},
			Producers: prods[i],
		}
	}
}

// rollFrame decodes frame fr of segment s from the segment's bytes and
// checks it as Append did. A frame that does not decode, or that is not
// the frame Append wrote, is a *tier.CorruptError; one whose records break
// a limit wraps record.ErrInvalid.
func (n *Writer) rollFrame(s *segment, data []byte, fr *frameRef) (Frame, error) {
	corrupt := func(err error) error {
		return &tier.CorruptError{What: "hot segment", Key: s.path, Offset: fr.off, Err: err}
	}
	if fr.off < 0 || fr.off+int64(fr.len) > int64(len(data)) {
		return Frame{}, corrupt(fmt.Errorf("frame of %d bytes is outside the %d-byte segment", fr.len, len(data)))
	}
	f, size, err := decodeFrame(data[fr.off : fr.off+int64(fr.len)])
	if err != nil {
		return Frame{}, corrupt(err)
	}
	if size != fr.len || f.Topic != fr.topic || f.TopicID != fr.topicID || f.Partition != fr.partition || len(f.Records) != fr.count || (f.Producer != nil) != fr.idem {
		return Frame{}, corrupt(fmt.Errorf("frame holds %d records of %s/%d, %d of %s/%d were appended",
			len(f.Records), f.Topic, f.Partition, fr.count, fr.topic, fr.partition))
	}
	if err := record.Validate(f.Topic, f.Records); err != nil {
		return Frame{}, fmt.Errorf("roll %s: %w", s.path, err)
	}
	return f, nil
}

// objectKey names a new object. Keys sort by creation time, which lets a
// garbage collector find old orphans (uploads whose commit never landed)
// without reading the manifest for recent ones.
func (n *Writer) objectKey() string {
	var r [8]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("data/%013d-%s-%s.arrow", time.Now().UnixMilli(), n.opts.Node, hex.EncodeToString(r[:]))
}

// retry runs f with backoff until it succeeds or ctx ends. On giving up it
// reports the last error from the store itself, not the deadline that
// stopped the retries.
func retry(ctx context.Context, f func() error) error {
	start := time.Now()
	backoff := 50 * time.Millisecond
	var cause error
	for {
		err := f()
		if err == nil {
			return nil
		}
		if cause == nil || ctx.Err() == nil {
			cause = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("store failing for %v: %w", time.Since(start).Round(time.Millisecond), cause)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// commitLoop commits uploaded segments strictly in roll order, grouping
// those already uploaded into one commit record.
func (n *Writer) commitLoop() {
	defer close(n.committed)
	var next *segment
	for {
		s := next
		next = nil
		if s == nil {
			var ok bool
			if s, ok = <-n.pending; !ok {
				return
			}
		}
		<-s.uploaded
		group := []*segment{s}
	more:
		for {
			select {
			case s2, ok := <-n.pending:
				if !ok {
					break more
				}
				select {
				case <-s2.uploaded:
					group = append(group, s2)
				default:
					next = s2
					break more
				}
			default:
				break more
			}
		}
		n.commit(group)
	}
}

func (n *Writer) commit(group []*segment) {
	var objs []manifest.PendingObject
	var ok []*segment
	var releases []func()
	for _, s := range group {
		if s.uploadErr != nil {
			n.opts.Logger.Error("roll failed", "segment", s.path, "err", s.uploadErr)
			s.fail(s.uploadErr)
			continue
		}
		if s.obj.Key == "" { // every frame was bad; each has its error
			s.fail(nil)
			continue
		}
		objs = append(objs, s.obj)
		ok = append(ok, s)
	}
	if len(objs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), n.opts.StoreTimeout)
		res, err := n.log.Append(ctx, objs)
		cancel()
		if err != nil {
			err = fmt.Errorf("%w: commit %d objects: %w", ErrStore, len(objs), err)
			n.opts.Logger.Error("commit failed", "err", err)
			for _, s := range ok {
				s.fail(err)
			}
			ok = nil
		} else {
			n.opts.Hook("after-commit")
			for i, s := range ok {
				releases = append(releases, s.ack(res[i]))
			}
		}
	}
	n.mu.Lock()
	defer func() {
		n.mu.Unlock()
		for _, release := range releases {
			release()
		}
	}()
	n.mu.inflight -= len(group)
	close(n.mu.space)
	n.mu.space = make(chan struct{})
	for _, s := range group {
		if n.mu.closed || !containsSeg(ok, s) {
			s.drop()
			continue
		}
		n.mu.hot[s.obj.Key] = s
		n.mu.hotOrder = append(n.mu.hotOrder, s)
		n.mu.hotBytes += s.held
	}
	// Bounded by bytes (file bytes and index heap) and by count: each held
	// segment keeps a file open.
	for len(n.mu.hotOrder) > 0 && (n.mu.hotBytes > n.opts.HotBytes || len(n.mu.hotOrder) > maxHotSegments) {
		old := n.mu.hotOrder[0]
		n.mu.hotOrder = n.mu.hotOrder[1:]
		delete(n.mu.hot, old.obj.Key)
		n.mu.hotBytes -= old.held
		old.drop()
	}
	if c := n.mu.cur; c != nil && (c.due || c.cost >= n.opts.RollBytes) {
		n.sealLocked()
	}
}

func containsSeg(ss []*segment, s *segment) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// fail releases the waiters of a segment that was not committed with err,
// or with their own frame's error where it has one.
func (s *segment) fail(err error) {
	for _, f := range s.frames {
		if f.err != nil {
			f.done <- result{err: f.err}
			continue
		}
		f.done <- result{err: err}
	}
}

// ack indexes the frames of a committed segment for HotRecords, dropping
// what reads do not need, and returns the function that releases their
// waiters with their offsets. The caller puts the segment in the hot map
// before it releases anyone, so a producer that reads right after its
// acknowledgement finds its records on this node.
func (s *segment) ack(r manifest.AppendResult) (release func()) {
	parts := map[partKey][]heldFrame{}
	frames := 0
	out := make([]result, len(s.frames))
	done := make([]chan result, len(s.frames))
	for i, f := range s.frames {
		done[i] = f.done
		if f.err != nil {
			out[i] = result{err: f.err}
			continue
		}
		if err := r.Err[f.part]; err != nil {
			// A part left out for its producer batches answers each
			// idempotent frame with its own outcome (a duplicate with its
			// original offset); its other frames get ErrRetry.
			out[i] = result{err: err}
			if f.idem && r.Producers[f.part] != nil {
				pr := r.Producers[f.part][f.pidx]
				out[i] = result{base: pr.Base, err: pr.Err}
			}
			continue
		}
		out[i] = result{base: r.Base[f.part] + f.delta}
		k := partKey{f.topic, f.partition}
		parts[k] = append(parts[k], heldFrame{off: f.off, len: f.len, delta: f.delta, count: f.count})
		frames++
	}
	s.parts = parts
	s.held = s.size + int64(frames)*heldFrameCost + int64(len(parts))*heldPartCost
	s.frames, s.ids, s.obj.Parts = nil, nil, nil
	return func() {
		for i, ch := range done {
			ch <- out[i]
		}
	}
}

// Holds reports whether this node holds the committed segment that became
// object key.
func (n *Writer) Holds(key string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.hot[key] != nil
}

// HotRecords returns records of a partition's part of object key, from
// offset_delta `from` on, while this node still holds the segment that
// became that object. Offsets in the result are deltas; the caller adds the
// base. ok is false when the segment is not held here.
func (n *Writer) HotRecords(key, topic string, partition int32, from int64, maxRecords, maxBytes int) (recs []record.Record, ok bool, err error) {
	n.mu.Lock()
	s := n.mu.hot[key]
	n.mu.Unlock()
	if s == nil {
		return nil, false, nil
	}
	s.readMu.RLock()
	defer s.readMu.RUnlock()
	if s.closed {
		return nil, false, nil
	}
	bytes := 0
	for _, f := range s.parts[partKey{topic, partition}] {
		if f.delta+int64(f.count) <= from {
			continue
		}
		buf := make([]byte, f.len)
		if _, err := s.f.ReadAt(buf, f.off); err != nil {
			return nil, false, fmt.Errorf("read hot segment %s: %w", s.path, err)
		}
		fr, _, err := decodeFrame(buf)
		if err != nil {
			return nil, false, &tier.CorruptError{What: "hot segment", Key: s.path, Offset: f.off, Err: err}
		}
		for j, r := range fr.Records {
			d := f.delta + int64(j)
			if d < from {
				continue
			}
			if len(recs) >= maxRecords || (len(recs) > 0 && bytes+r.Size() > maxBytes) {
				return recs, true, nil
			}
			r.Offset = d
			bytes += r.Size()
			recs = append(recs, r)
		}
	}
	return recs, true, nil
}
