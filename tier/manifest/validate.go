package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/shalelog/shale/tier"
)

// A commit record or checkpoint in the bucket may have been written by a
// buggy or older build, or by hand. Everything read from the bucket is
// checked here before it touches the state, so a bad record can never panic
// a node or make nodes disagree: every node checks the same bytes against
// the same state with the same rules (docs/format/manifest.md, "Validation").

// errNewerFormat marks a record or checkpoint written by a newer format
// version. It is not skipped: nodes that understand it would apply it, so
// skipping would make this node's state differ from theirs.
var errNewerFormat = errors.New("written by a newer format version")

func corrupt(what, key string, err error) error {
	return &tier.CorruptError{What: what, Key: key, Err: err}
}

// decodeCommit decodes and checks the commit record at key, apart from
// its fit with the state (checkCommit). A record from a newer format
// version returns an error wrapping errNewerFormat; any other bad record a
// *tier.CorruptError.
func decodeCommit(key string, data []byte) (*Commit, error) {
	var r Commit
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, corrupt("commit record", key, err)
	}
	if r.Version > FormatVersion {
		return nil, fmt.Errorf("decode commit record %s: format version %d is %w (this build reads up to %d)", key, r.Version, errNewerFormat, FormatVersion)
	}
	if r.Version < 1 {
		return nil, corrupt("commit record", key, fmt.Errorf("format version %d, want 1 to %d", r.Version, FormatVersion))
	}
	if LogKey(r.Seq) != key {
		return nil, corrupt("commit record", key, fmt.Errorf("it says it is number %d", r.Seq))
	}
	if r.Version < FormatVersion {
		r.downgrade()
	}
	return &r, nil
}

// decodeCheckpoint decodes and checks the checkpoint of commit seq.
func decodeCheckpoint(key string, seq int64, data []byte) (*State, error) {
	var cp checkpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		return nil, corrupt("checkpoint", key, err)
	}
	if cp.Version < 1 || cp.Version > FormatVersion {
		return nil, corrupt("checkpoint", key, fmt.Errorf("format version %d, this build reads 1 to %d", cp.Version, FormatVersion))
	}
	if cp.Version < 2 && cp.State != nil {
		cp.State.downgrade()
	}
	if err := checkState(cp.State, seq); err != nil {
		return nil, corrupt("checkpoint", key, err)
	}
	return cp.State, nil
}

// checkState checks a checkpoint's state: shapes, ranges, and each
// partition's index being contiguous and ending at its end offset.
func checkState(s *State, seq int64) error {
	if s == nil {
		return errors.New("no state")
	}
	if s.Seq != seq || seq < 0 {
		return fmt.Errorf("state is at commit %d, want %d", s.Seq, seq)
	}
	if s.Topics == nil {
		s.Topics = map[string]*TopicState{}
	}
	if s.ClockMs < 0 || s.NextProducerID < 0 || s.ProducerLimits.ExpiryMs < 0 || s.ProducerLimits.Max < 0 {
		return fmt.Errorf("clock %d, next producer id %d, producer limits %+v: want 0 or more", s.ClockMs, s.NextProducerID, s.ProducerLimits)
	}
	for name, t := range s.Topics {
		if t == nil || t.Name != name {
			return fmt.Errorf("topic %q: entry is missing or has another name", name)
		}
		if err := ValidateTopic(name, t.Partitions); err != nil {
			return err
		}
		if t.ID == "" {
			return fmt.Errorf("topic %q: no id", name)
		}
		if len(t.Parts) != int(t.Partitions) {
			return fmt.Errorf("topic %q: %d partitions listed, it has %d", name, len(t.Parts), t.Partitions)
		}
		for i, p := range t.Parts {
			if err := checkPartition(p); err != nil {
				return fmt.Errorf("topic %q partition %d: %w", name, i, err)
			}
		}
	}
	return nil
}

func checkPartition(p *Partition) error {
	if p == nil {
		return errors.New("missing")
	}
	if p.Start < 0 || p.Start > p.End || p.Bytes < 0 {
		return fmt.Errorf("start %d, end %d, bytes %d: want 0 <= start <= end, bytes >= 0", p.Start, p.End, p.Bytes)
	}
	next := int64(-1) // the offset the next page or entry must start at; -1 before the first
	for i, pg := range p.Pages {
		if pg.Key == "" || pg.Entries <= 0 || pg.Base < 0 || pg.Base >= pg.End {
			return fmt.Errorf("page %d: key %q, %d entries, offsets [%d, %d): want a key, entries > 0, 0 <= base < end", i, pg.Key, pg.Entries, pg.Base, pg.End)
		}
		if next >= 0 && pg.Base != next {
			return fmt.Errorf("page %d starts at %d, the previous one ends at %d", i, pg.Base, next)
		}
		next = pg.End
	}
	if err := checkEntries(p.Entries, next); err != nil {
		return err
	}
	for id, ps := range p.Producers {
		if err := checkProducer(ps, p.End); err != nil {
			return fmt.Errorf("producer %d: %w", id, err)
		}
	}
	if n := len(p.Entries); n > 0 {
		next = p.Entries[n-1].End()
	}
	if next >= 0 && next != p.End {
		return fmt.Errorf("index ends at %d, the partition at %d", next, p.End)
	}
	return nil
}

// checkProducer checks a producer's state in a partition ending at end:
// one to five batches, in sequence, at increasing offsets before end.
func checkProducer(ps *ProducerState, end int64) error {
	if ps == nil || ps.Epoch < 0 || len(ps.Batches) < 1 || len(ps.Batches) > producerBatches {
		return errors.New("want an epoch >= 0 and 1 to 5 batches")
	}
	for i, b := range ps.Batches {
		n := seqCount(b.FirstSeq, b.LastSeq)
		if b.Base < 0 || b.Base > end-n {
			return fmt.Errorf("batch %d: %d records at offset %d: want them before the end %d", i, n, b.Base, end)
		}
		if i > 0 {
			prev := ps.Batches[i-1]
			if b.FirstSeq != nextSeq(prev.LastSeq) || b.Base < prev.Base+seqCount(prev.FirstSeq, prev.LastSeq) {
				return fmt.Errorf("batch %d: sequence %d at offset %d does not follow the previous batch", i, b.FirstSeq, b.Base)
			}
		}
	}
	return nil
}

// checkEntries checks that es are valid and contiguous, starting at first
// unless first is -1.
func checkEntries(es []Entry, first int64) error {
	next := first
	for i := range es {
		e := &es[i]
		if e.Object == "" || e.Base < 0 {
			return fmt.Errorf("entry %d: object %q, base %d: want an object and base >= 0", i, e.Object, e.Base)
		}
		if next >= 0 && e.Base != next {
			return fmt.Errorf("entry %d starts at %d, the previous one ends at %d", i, e.Base, next)
		}
		if err := checkSpan(e.Base, &e.Span, e.ObjectSize); err != nil {
			return fmt.Errorf("entry %d (%s): %w", i, e.Object, err)
		}
		next = e.End()
	}
	return nil
}

// checkPage checks a page's entries against the reference to it.
func checkPage(ref PageRef, es []Entry) error {
	if len(es) != ref.Entries || len(es) == 0 {
		return fmt.Errorf("%d entries, the reference says %d", len(es), ref.Entries)
	}
	if err := checkEntries(es, ref.Base); err != nil {
		return err
	}
	if end := es[len(es)-1].End(); end != ref.End {
		return fmt.Errorf("entries end at %d, the reference says %d", end, ref.End)
	}
	return nil
}

// checkSpan checks one partition's part of an object at base: a positive
// count that fits in an offset, ordered time bounds, and batches that cover
// rows [0, count) in order, each inside the object.
func checkSpan(base int64, sp *Span, objectSize int64) error {
	if sp.Count <= 0 || base < 0 || sp.Count > math.MaxInt64-base {
		return fmt.Errorf("base %d, count %d: want count > 0 and base+count within int64", base, sp.Count)
	}
	if sp.Bytes < 0 || sp.MinTs > sp.MaxTs {
		return fmt.Errorf("bytes %d, timestamps [%d, %d]: want bytes >= 0 and min_ts <= max_ts", sp.Bytes, sp.MinTs, sp.MaxTs)
	}
	if objectSize < 0 {
		return fmt.Errorf("object size %d is negative", objectSize)
	}
	if len(sp.Batches) == 0 {
		return errors.New("no batches")
	}
	var rows int64
	for i, b := range sp.Batches {
		if b.Delta != rows || b.Rows <= 0 || b.Rows > sp.Count-rows {
			return fmt.Errorf("batch %d: delta %d, rows %d: want delta %d and rows in [1, %d]", i, b.Delta, b.Rows, rows, sp.Count-rows)
		}
		if b.Off < 0 || b.Len <= 0 || b.Len > objectSize || b.Off > objectSize-b.Len {
			return fmt.Errorf("batch %d: bytes [%d, +%d) are not inside the object's %d bytes", i, b.Off, b.Len, objectSize)
		}
		rows += b.Rows
	}
	if rows != sp.Count {
		return fmt.Errorf("batches hold %d rows, the count is %d", rows, sp.Count)
	}
	return nil
}

// overlay checks a commit's operations in order against a state without
// changing it: what the operations before the current one would have done
// is kept here.
type overlay struct {
	s       *State
	created map[string]*Topic
	deleted map[string]bool
	// changed holds state topics that earlier operations grew or
	// reconfigured (the same incarnation: a topic created by the commit
	// is changed in created).
	changed map[string]*Topic
	ends    map[partKey]int64
	starts  map[partKey]int64
	objects map[string]bool
	parts   int64 // partitions in the state after the operations so far
	// For producer batches: the commit's number and state clock, the next
	// unreserved producer id, and producers' states after the operations
	// so far.
	seq, clock int64
	nextID     int64
	prods      map[prodKey]*ProducerState
}

type partKey struct {
	topicID   string
	partition int32
}

// newOverlay starts checking commit seq, written at timeMs, against s.
func newOverlay(s *State, seq, timeMs int64) *overlay {
	o := &overlay{s: s, created: map[string]*Topic{}, deleted: map[string]bool{}, changed: map[string]*Topic{},
		ends: map[partKey]int64{}, starts: map[partKey]int64{}, objects: map[string]bool{},
		seq: seq, clock: s.clockAt(timeMs), nextID: s.NextProducerID, prods: map[prodKey]*ProducerState{}}
	for _, t := range s.Topics {
		o.parts += int64(t.Partitions)
	}
	return o
}

func (o *overlay) topic(name string) (*Topic, bool) {
	if t, ok := o.created[name]; ok {
		return t, true
	}
	if o.deleted[name] {
		return nil, false
	}
	if t, ok := o.changed[name]; ok {
		return t, true
	}
	t, ok := o.s.Topics[name]
	if !ok {
		return nil, false
	}
	return &t.Topic, true
}

// end is the partition's end offset after the operations so far.
func (o *overlay) end(t *Topic, p int32) int64 {
	if e, ok := o.ends[partKey{t.ID, p}]; ok {
		return e
	}
	if sp := o.statePart(t, p); sp != nil {
		return sp.End
	}
	return 0
}

// start is the partition's start offset after the operations so far.
func (o *overlay) start(t *Topic, p int32) int64 {
	if s, ok := o.starts[partKey{t.ID, p}]; ok {
		return s
	}
	if sp := o.statePart(t, p); sp != nil {
		return sp.Start
	}
	return 0
}

// statePart is the state's partition p of incarnation t, or nil when the
// state does not have it: the topic was created by this commit, or the
// partition added by it (it starts empty).
func (o *overlay) statePart(t *Topic, p int32) *Partition {
	st, ok := o.s.Topics[t.Name]
	if !ok || st.ID != t.ID || o.deleted[t.Name] || o.created[t.Name] != nil || p < 0 || int(p) >= len(st.Parts) {
		return nil
	}
	return st.Parts[p]
}

// checkCommit reports why c cannot be applied to s, or nil. The whole
// commit is checked before any of it is applied: a commit is applied
// whole or skipped whole.
func (s *State) checkCommit(c *Commit) error {
	o := newOverlay(s, c.Seq, c.TimeMs)
	for i, op := range c.Ops {
		if err := o.op(op); err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
	}
	return nil
}

func (o *overlay) op(op Op) error {
	n := 0
	for _, set := range []bool{op.CreateTopic != nil, op.DeleteTopic != nil, op.Append != nil, op.ProducerIDs != nil, op.ProducerLimits != nil,
		op.AddPartitions != nil, op.SetTopicConfig != nil, op.Trim != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%d operations in one element, want exactly 1", n)
	}
	switch {
	case op.CreateTopic != nil:
		t := *op.CreateTopic
		if err := ValidateTopic(t.Name, t.Partitions); err != nil {
			return fmt.Errorf("create_topic: %w", err)
		}
		if t.ID == "" {
			return fmt.Errorf("create_topic %q: no id", t.Name)
		}
		if _, exists := o.topic(t.Name); exists {
			return fmt.Errorf("create_topic %q: %w", t.Name, ErrTopicExists)
		}
		o.created[t.Name] = &t
		delete(o.deleted, t.Name)
		o.parts += int64(t.Partitions)
	case op.DeleteTopic != nil:
		d := op.DeleteTopic
		t, ok := o.topic(d.Name)
		if !ok || t.ID != d.ID {
			return fmt.Errorf("delete_topic %q id %q: no such incarnation", d.Name, d.ID)
		}
		o.deleted[d.Name] = true
		delete(o.created, d.Name)
		delete(o.changed, d.Name)
		o.parts -= int64(t.Partitions)
	case op.AddPartitions != nil:
		a := op.AddPartitions
		t, ok := o.topic(a.Name)
		if !ok || t.ID != a.ID {
			return fmt.Errorf("add_partitions %q id %q: no such incarnation", a.Name, a.ID)
		}
		if err := ValidateTopic(a.Name, a.Partitions); err != nil || a.Partitions <= t.Partitions {
			return fmt.Errorf("add_partitions %q: %d partitions: want more than its %d, at most %d", a.Name, a.Partitions, t.Partitions, MaxPartitions)
		}
		o.parts += int64(a.Partitions - t.Partitions)
		o.change(t).Partitions = a.Partitions
	case op.SetTopicConfig != nil:
		c := op.SetTopicConfig
		t, ok := o.topic(c.Name)
		if !ok || t.ID != c.ID {
			return fmt.Errorf("set_topic_config %q id %q: no such incarnation", c.Name, c.ID)
		}
		o.change(t).Retention = c.Retention
	case op.Trim != nil:
		tr := op.Trim
		t, ok := o.topic(tr.Topic)
		if !ok || tr.TopicID == "" || t.ID != tr.TopicID {
			return fmt.Errorf("trim: %w %q id %q", ErrUnknownTopic, tr.Topic, tr.TopicID)
		}
		if tr.Partition < 0 || tr.Partition >= t.Partitions {
			return fmt.Errorf("trim: %w %d of topic %q: valid partitions are 0 to %d", ErrUnknownPartition, tr.Partition, tr.Topic, t.Partitions-1)
		}
		// Never backwards (a start offset, once passed, is gone for every
		// reader) and never past the end (offsets not yet assigned).
		if start, end := o.start(t, tr.Partition), o.end(t, tr.Partition); tr.Start <= start || tr.Start > end {
			return fmt.Errorf("trim %s/%d to %d: want more than its start %d, at most its end %d", tr.Topic, tr.Partition, tr.Start, start, end)
		}
		o.starts[partKey{t.ID, tr.Partition}] = tr.Start
	case op.ProducerIDs != nil:
		r := op.ProducerIDs
		if r.First != o.nextID || r.Count < 1 || r.Count > maxProducerIDBlock || r.First > math.MaxInt64-r.Count {
			return fmt.Errorf("producer_ids: first %d, count %d: want first %d and count 1 to %d", r.First, r.Count, o.nextID, maxProducerIDBlock)
		}
		o.nextID = r.First + r.Count
	case op.ProducerLimits != nil:
		if pl := op.ProducerLimits; pl.ExpiryMs < 0 || pl.Max < 0 {
			return fmt.Errorf("producer_limits: expiry %d ms, max %d: want 0 or more", pl.ExpiryMs, pl.Max)
		}
	default:
		a := op.Append
		if err := o.object(a.Object, a.Size); err != nil {
			return err
		}
		if len(a.Parts) == 0 {
			return fmt.Errorf("append %s: no parts", a.Object)
		}
		seen := map[partKey]bool{}
		for j := range a.Parts {
			if _, err := o.part(a.Size, &a.Parts[j], seen); err != nil {
				return fmt.Errorf("append %s: part %d: %w", a.Object, j, err)
			}
		}
	}
	return nil
}

// change returns the overlay's own copy of topic t, for an operation to
// change.
func (o *overlay) change(t *Topic) *Topic {
	if c, ok := o.created[t.Name]; ok {
		return c
	}
	if c, ok := o.changed[t.Name]; ok {
		return c
	}
	c := *t
	o.changed[t.Name] = &c
	return &c
}

// object checks an appended object's key and size and that no earlier
// operation of the commit appended it.
func (o *overlay) object(key string, size int64) error {
	if key == "" || size < 0 {
		return fmt.Errorf("append: object %q of %d bytes: want a key and size >= 0", key, size)
	}
	if o.objects[key] {
		return fmt.Errorf("append %s: object appended twice in one commit", key)
	}
	o.objects[key] = true
	return nil
}

// errProducerBatch marks a part refused for one of its producer batches
// (a duplicate, or one out of sequence); the batch results say which.
var errProducerBatch = errors.New("a producer batch cannot be committed")

// part checks one append part and, if it fits, advances its partition's
// end offset and its producers. seen holds the partitions of the same
// object so far. A part refused for its producer batches returns their
// outcomes with an error wrapping errProducerBatch.
func (o *overlay) part(objectSize int64, pa *AppendPart, seen map[partKey]bool) ([]ProducerResult, error) {
	t, ok := o.topic(pa.Topic)
	if !ok || pa.TopicID == "" || t.ID != pa.TopicID {
		return nil, fmt.Errorf("%w %q id %q", ErrUnknownTopic, pa.Topic, pa.TopicID)
	}
	if pa.Partition < 0 || pa.Partition >= t.Partitions {
		return nil, fmt.Errorf("%w %d of topic %q: valid partitions are 0 to %d", ErrUnknownPartition, pa.Partition, pa.Topic, t.Partitions-1)
	}
	k := partKey{t.ID, pa.Partition}
	if seen[k] {
		return nil, fmt.Errorf("partition %d of topic %q listed twice in one object", pa.Partition, pa.Topic)
	}
	if end := o.end(t, pa.Partition); pa.Base != end {
		return nil, fmt.Errorf("base %d of partition %d of topic %q is not its end offset %d", pa.Base, pa.Partition, pa.Topic, end)
	}
	if err := checkSpan(pa.Base, &pa.Span, objectSize); err != nil {
		return nil, err
	}
	res, ok, err := o.checkProducers(t, pa, pa.Count)
	if err != nil {
		return nil, err
	}
	if !ok {
		for i, r := range res {
			if r.Duplicate || r.Err != ErrRetry {
				return res, fmt.Errorf("%w: producer batch %d: duplicate %v, %v", errProducerBatch, i, r.Duplicate, r.Err)
			}
		}
		return res, errProducerBatch
	}
	seen[k] = true
	o.ends[k] = pa.Base + pa.Count
	return res, nil
}
