package manifest

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Idempotent producers (docs/design.md, "Idempotent producers"). Per
// producer id and partition the state keeps the producer's epoch and its
// last five batches (first and last sequence, base offset). Appends carry
// the batches of idempotent producers, and every node checks them against
// the state the record lands on, so a duplicate or out-of-sequence batch is
// judged the same way everywhere.

var (
	// ErrOutOfOrderSequence is a batch whose first sequence is not the one
	// after the producer's last (a gap, or older than its last five
	// batches), or not 0 for a new epoch. Kafka: OUT_OF_ORDER_SEQUENCE_NUMBER.
	ErrOutOfOrderSequence = errors.New("out of order sequence number")
	// ErrProducerFenced is a batch whose epoch is older than the
	// producer's. Kafka: INVALID_PRODUCER_EPOCH.
	ErrProducerFenced = errors.New("producer fenced: its epoch is older than the latest")
	// ErrUnknownProducer is a batch of a producer the partition has no
	// state for (never seen, expired or evicted) whose sequence is not 0,
	// or of an id that was never allocated. Kafka: UNKNOWN_PRODUCER_ID.
	ErrUnknownProducer = errors.New("unknown producer id")
	// ErrRetry is a batch that was not committed because another batch of
	// the same object part was a duplicate or invalid: the part is
	// committed whole or not at all. Nothing of it was written; sending it
	// again is safe. Kafka front ends answer it with a retriable code.
	ErrRetry = errors.New("batch not committed, retry")
)

// Producer state limits (docs/format/manifest.md, "Producer state"). They
// are part of the state, not node options: every node must prune the same
// entries at the same commit.
const (
	// DefaultProducerExpiry is how long a producer's state outlives its
	// last committed batch: Kafka's producer.id.expiration.ms default.
	DefaultProducerExpiry = 24 * 60 * 60 * 1000 // ms
	// DefaultMaxProducers bounds producer entries (per producer and
	// partition) in the whole state, about 250 bytes each in a checkpoint.
	DefaultMaxProducers = 100000
	// maxProducerIDBlock bounds one producer_ids reservation.
	maxProducerIDBlock = 1 << 20
	// producerBatches is how many batches per producer and partition are
	// remembered for duplicate detection, as Kafka does.
	producerBatches = 5
)

// ProducerLimits are the cluster's producer state limits; zero fields take
// the defaults.
type ProducerLimits struct {
	ExpiryMs int64 `json:"expiry_ms,omitempty"`
	Max      int64 `json:"max,omitempty"`
}

func (pl ProducerLimits) expiry() int64 {
	if pl.ExpiryMs <= 0 {
		return DefaultProducerExpiry
	}
	return pl.ExpiryMs
}

func (pl ProducerLimits) max() int64 {
	if pl.Max <= 0 {
		return DefaultMaxProducers
	}
	return pl.Max
}

// ProducerIDsOp reserves producer ids [First, First+Count) for a node.
type ProducerIDsOp struct {
	Node  string `json:"node"`
	First int64  `json:"first"`
	Count int64  `json:"count"`
}

// ProducerBatch is one idempotent producer's batch inside an append part:
// rows [Delta, Delta+n) of the part, n = the records from FirstSeq to
// LastSeq. Persisted as [id, epoch, first_seq, last_seq, delta].
type ProducerBatch struct {
	ID       int64
	Epoch    int16
	FirstSeq int32
	LastSeq  int32
	Delta    int64
}

func (b ProducerBatch) MarshalJSON() ([]byte, error) {
	return json.Marshal([5]int64{b.ID, int64(b.Epoch), int64(b.FirstSeq), int64(b.LastSeq), b.Delta})
}

func (b *ProducerBatch) UnmarshalJSON(data []byte) error {
	var a [5]int64
	if err := json.Unmarshal(data, &a); err != nil {
		return err
	}
	if a[1] < 0 || a[1] > math.MaxInt16 || a[2] < 0 || a[2] > math.MaxInt32 || a[3] < 0 || a[3] > math.MaxInt32 {
		return fmt.Errorf("producer batch %v: epoch or sequence out of range", a)
	}
	*b = ProducerBatch{ID: a[0], Epoch: int16(a[1]), FirstSeq: int32(a[2]), LastSeq: int32(a[3]), Delta: a[4]}
	return nil
}

// LastSeq is the sequence of the last of count records starting at first;
// sequences wrap from MaxInt32 to 0, as Kafka's do.
func LastSeq(first int32, count int) int32 {
	return int32((int64(first) + int64(count) - 1) % (math.MaxInt32 + 1))
}

// seqCount is the number of records from first to last, wrapping.
func seqCount(first, last int32) int64 {
	return (int64(last)-int64(first)+math.MaxInt32+1)%(math.MaxInt32+1) + 1
}

func nextSeq(last int32) int32 {
	if last == math.MaxInt32 {
		return 0
	}
	return last + 1
}

// SeqBatch is a remembered batch: its sequences and the offset of its
// first record. Persisted as [first_seq, last_seq, base].
type SeqBatch struct {
	FirstSeq int32
	LastSeq  int32
	Base     int64
}

func (b SeqBatch) MarshalJSON() ([]byte, error) {
	return json.Marshal([3]int64{int64(b.FirstSeq), int64(b.LastSeq), b.Base})
}

func (b *SeqBatch) UnmarshalJSON(data []byte) error {
	var a [3]int64
	if err := json.Unmarshal(data, &a); err != nil {
		return err
	}
	if a[0] < 0 || a[0] > math.MaxInt32 || a[1] < 0 || a[1] > math.MaxInt32 {
		return fmt.Errorf("producer batch %v: sequence out of range", a)
	}
	*b = SeqBatch{FirstSeq: int32(a[0]), LastSeq: int32(a[1]), Base: a[2]}
	return nil
}

// ProducerState is one producer's state in one partition. It is never
// changed in place once in a State (a checkpoint snapshot shares it): an
// update replaces it.
type ProducerState struct {
	Epoch   int16      `json:"epoch"`
	LastMs  int64      `json:"last_ms"` // the state clock at its last batch: expiry
	Commit  int64      `json:"commit"`  // the commit of its last batch: eviction order
	Batches []SeqBatch `json:"batches"` // its last batches, oldest first, at most five
}

// find returns the remembered batch with these sequences.
func (ps *ProducerState) find(first, last int32) (SeqBatch, bool) {
	for _, b := range ps.Batches {
		if b.FirstSeq == first && b.LastSeq == last {
			return b, true
		}
	}
	return SeqBatch{}, false
}

// judge decides a batch against the producer's state ps (nil: none) at
// the start of its commit: a duplicate (dup, with the original batch), or
// an error, or nil for a batch that may be committed.
func judge(ps *ProducerState, b ProducerBatch) (orig SeqBatch, dup bool, err error) {
	switch {
	case ps == nil:
		if b.FirstSeq != 0 {
			return SeqBatch{}, false, fmt.Errorf("%w %d: sequence %d, want 0 for a producer with no state here", ErrUnknownProducer, b.ID, b.FirstSeq)
		}
	case b.Epoch < ps.Epoch:
		return SeqBatch{}, false, fmt.Errorf("%w: producer %d epoch %d, latest %d", ErrProducerFenced, b.ID, b.Epoch, ps.Epoch)
	case b.Epoch > ps.Epoch:
		if b.FirstSeq != 0 {
			return SeqBatch{}, false, fmt.Errorf("%w: producer %d new epoch %d starts at sequence %d, want 0", ErrOutOfOrderSequence, b.ID, b.Epoch, b.FirstSeq)
		}
	default:
		if orig, ok := ps.find(b.FirstSeq, b.LastSeq); ok {
			return orig, true, nil
		}
		last := ps.Batches[len(ps.Batches)-1].LastSeq
		if want := nextSeq(last); b.FirstSeq != want {
			return SeqBatch{}, false, fmt.Errorf("%w: producer %d epoch %d sequence %d, want %d", ErrOutOfOrderSequence, b.ID, b.Epoch, b.FirstSeq, want)
		}
	}
	return SeqBatch{}, false, nil
}

// advance returns the producer's state after batch b at base, committed
// by commit seq at state clock ms.
func advance(ps *ProducerState, b ProducerBatch, base, seq, ms int64) *ProducerState {
	n := &ProducerState{Epoch: b.Epoch, LastMs: ms, Commit: seq}
	if ps != nil && ps.Epoch == b.Epoch {
		n.Batches = append(n.Batches, ps.Batches[max(0, len(ps.Batches)-producerBatches+1):]...)
	}
	n.Batches = append(n.Batches, SeqBatch{FirstSeq: b.FirstSeq, LastSeq: b.LastSeq, Base: base})
	return n
}

// live returns the producer's state in p unless it expired by clock ms.
func (s *State) live(p *Partition, id, clock int64) *ProducerState {
	ps := p.Producers[id]
	if ps == nil || ps.LastMs < clock-s.ProducerLimits.expiry() {
		return nil
	}
	return ps
}

// clockAt is the state clock after a commit written at ms: the clocks of
// nodes differ, so the state's clock is the largest commit time seen,
// which never goes backwards and so never revives an expired producer.
func (s *State) clockAt(ms int64) int64 { return max(s.ClockMs, ms) }

// prodKey names one producer's state in one partition.
type prodKey struct {
	topicID   string
	partition int32
	id        int64
}

func (a prodKey) less(b prodKey) bool {
	if a.topicID != b.topicID {
		return a.topicID < b.topicID
	}
	if a.partition != b.partition {
		return a.partition < b.partition
	}
	return a.id < b.id
}

// producerIndex orders every producer entry of a state by (commit of its
// last batch, topic id, partition, producer id): the oldest first. It is
// derived from the state (rebuilt after loading a checkpoint), and the
// order is total, so every node expires and evicts the same entries. Since
// the state clock never goes backwards, entries expire in this order too.
type producerIndex struct {
	items []*prodItem
	byKey map[prodKey]*prodItem
}

type prodItem struct {
	key    prodKey
	topic  string // the topic's name, to find the entry when it is removed
	commit int64
	lastMs int64
	i      int
}

func (x *producerIndex) Len() int { return len(x.items) }
func (x *producerIndex) Less(i, j int) bool {
	a, b := x.items[i], x.items[j]
	if a.commit != b.commit {
		return a.commit < b.commit
	}
	return a.key.less(b.key)
}
func (x *producerIndex) Swap(i, j int) {
	x.items[i], x.items[j] = x.items[j], x.items[i]
	x.items[i].i, x.items[j].i = i, j
}
func (x *producerIndex) Push(v any) {
	it := v.(*prodItem)
	it.i = len(x.items)
	x.items = append(x.items, it)
}
func (x *producerIndex) Pop() any {
	it := x.items[len(x.items)-1]
	x.items = x.items[:len(x.items)-1]
	return it
}

// producers returns the state's producer index, building it if needed.
func (s *State) producers() *producerIndex {
	if s.prods != nil {
		return s.prods
	}
	x := &producerIndex{byKey: map[prodKey]*prodItem{}}
	for _, t := range s.Topics {
		for i, p := range t.Parts {
			for id, ps := range p.Producers {
				it := &prodItem{key: prodKey{t.ID, int32(i), id}, topic: t.Name, commit: ps.Commit, lastMs: ps.LastMs, i: len(x.items)}
				x.items = append(x.items, it)
				x.byKey[it.key] = it
			}
		}
	}
	heap.Init(x)
	s.prods = x
	return x
}

// setProducer stores ps as the state of producer id in partition i of t.
func (s *State) setProducer(t *TopicState, i int32, id int64, ps *ProducerState) {
	p := t.Parts[i]
	if p.Producers == nil {
		p.Producers = map[int64]*ProducerState{}
	}
	p.Producers[id] = ps
	x := s.producers()
	k := prodKey{t.ID, i, id}
	if it, ok := x.byKey[k]; ok {
		it.commit, it.lastMs = ps.Commit, ps.LastMs
		heap.Fix(x, it.i)
		return
	}
	it := &prodItem{key: k, topic: t.Name, commit: ps.Commit, lastMs: ps.LastMs}
	heap.Push(x, it)
	x.byKey[k] = it
}

// dropTopicProducers removes a deleted topic's producer entries from the
// index.
func (s *State) dropTopicProducers(t *TopicState) {
	if s.prods == nil {
		return
	}
	for i, p := range t.Parts {
		for id := range p.Producers {
			if it, ok := s.prods.byKey[prodKey{t.ID, int32(i), id}]; ok {
				heap.Remove(s.prods, it.i)
				delete(s.prods.byKey, it.key)
			}
		}
	}
}

// pruneProducers removes the entries expired at the state clock, then the
// oldest while there are more than the limit. It runs at the end of every
// commit, from the state alone, so every node removes the same entries.
func (s *State) pruneProducers() {
	x := s.producers()
	expiry, limit := s.ProducerLimits.expiry(), s.ProducerLimits.max()
	for x.Len() > 0 && (x.items[0].lastMs < s.ClockMs-expiry || int64(x.Len()) > limit) {
		it := heap.Pop(x).(*prodItem)
		delete(x.byKey, it.key)
		if t, ok := s.Topics[it.topic]; ok && t.ID == it.key.topicID && int(it.key.partition) < len(t.Parts) {
			p := t.Parts[it.key.partition]
			delete(p.Producers, it.key.id)
			if len(p.Producers) == 0 {
				p.Producers = nil
			}
		}
	}
}

// ProducerEntries is the number of producer entries (producer and
// partition) in this node's state.
func (l *Log) ProducerEntries() int {
	n := 0
	l.View(func(s *State) { n = s.producers().Len() })
	return n
}

// ProducerID returns a new producer id, with epoch 0, from this node's
// reserved block, and reserves a new block (one commit) when the block is
// used up. Ids are unique across nodes and restarts: a block is the node's
// once its producer_ids commit lands; ids of a block a node did not use
// before it stopped are never handed out.
func (l *Log) ProducerID(ctx context.Context) (int64, error) {
	l.ids.Lock()
	defer l.ids.Unlock()
	if l.ids.next < l.ids.end {
		id := l.ids.next
		l.ids.next++
		return id, nil
	}
	var op *ProducerIDsOp
	_, err := l.commit(ctx, func(s *State, _ int64) ([]Op, error) {
		op = &ProducerIDsOp{Node: l.opts.Node, First: s.NextProducerID, Count: l.opts.ProducerIDBlock}
		return []Op{{ProducerIDs: op}}, nil
	})
	if err != nil {
		return 0, fmt.Errorf("reserve producer ids: %w", err)
	}
	l.ids.next, l.ids.end = op.First+1, op.First+op.Count
	return op.First, nil
}

// SetProducerLimits commits new producer state limits for the whole
// cluster; zero fields mean the defaults. Entries beyond them are pruned
// by the same commit.
func (l *Log) SetProducerLimits(ctx context.Context, pl ProducerLimits) error {
	if pl.ExpiryMs < 0 || pl.Max < 0 {
		return fmt.Errorf("producer limits %+v: %w: want 0 (the default) or more", pl, ErrOutOfRange)
	}
	_, err := l.commit(ctx, func(*State, int64) ([]Op, error) { return []Op{{ProducerLimits: &pl}}, nil })
	return err
}

// checkProducers checks the producer batches of an append part against
// the state at clock, in order, as if committed at base. It returns each
// batch's outcome; ok is true when every batch may be committed, and then
// the overlay holds the producers' new states. A part with a duplicate or
// invalid batch is not committed whole; its other batches get ErrRetry.
func (o *overlay) checkProducers(t *Topic, pa *AppendPart, count int64) (res []ProducerResult, ok bool, err error) {
	if len(pa.Producers) == 0 {
		return nil, true, nil
	}
	res = make([]ProducerResult, len(pa.Producers))
	next := map[int64]*ProducerState{}
	end := int64(0) // rows before it are taken by an earlier batch
	ok = true
	for i, b := range pa.Producers {
		n := seqCount(b.FirstSeq, b.LastSeq)
		if b.ID < 0 || b.Epoch < 0 || b.Delta < end || n > count-b.Delta {
			return nil, false, fmt.Errorf("producer batch %d: id %d epoch %d, sequences %d-%d at row %d: want ids and epochs >= 0 and batches in order inside the part's %d rows",
				i, b.ID, b.Epoch, b.FirstSeq, b.LastSeq, b.Delta, count)
		}
		end = b.Delta + n
		if b.ID >= o.nextID {
			res[i].Err = fmt.Errorf("%w %d: never allocated", ErrUnknownProducer, b.ID)
			ok = false
			continue
		}
		ps, seen := next[b.ID]
		if !seen {
			ps = o.producer(t, pa.Partition, b.ID)
		}
		orig, dup, jerr := judge(ps, b)
		switch {
		case dup && orig.Base >= pa.Base:
			// The same batch twice in one part (a client that gave up on
			// its request sent it again while the first was still in the
			// roll): the first copy is not committed, so neither is.
			res[i].Err = ErrRetry
			ok = false
		case dup:
			res[i].Base, res[i].Duplicate = orig.Base, true
			ok = false
		case jerr != nil:
			res[i].Err = jerr
			ok = false
		default:
			res[i].Base = pa.Base + b.Delta
			next[b.ID] = advance(ps, b, pa.Base+b.Delta, o.seq, o.clock)
		}
	}
	if !ok {
		for i := range res {
			if !res[i].Duplicate && res[i].Err == nil {
				res[i].Base, res[i].Err = 0, ErrRetry
			}
		}
		return res, false, nil
	}
	for id, ps := range next {
		o.prods[prodKey{t.ID, pa.Partition, id}] = ps
	}
	return res, true, nil
}

// producer is a producer's live state in a partition after the commit's
// operations so far.
func (o *overlay) producer(t *Topic, partition int32, id int64) *ProducerState {
	if ps, ok := o.prods[prodKey{t.ID, partition, id}]; ok {
		return ps
	}
	sp := o.statePart(t, partition)
	if sp == nil {
		return nil
	}
	return o.s.live(sp, id, o.clock)
}

// ProducerResult is the outcome of one producer batch of a pending part:
// its base offset (the original one for a duplicate), or why it was not
// committed.
type ProducerResult struct {
	Base      int64
	Duplicate bool // committed before, by an earlier commit; Base is its offset then
	Err       error
}

// Committed reports whether batch b (its Delta ignored) is one of its
// producer's last batches in the partition in this node's state, and its
// base offset then. Committed state only grows, so a yes from a node that
// is behind is still true: a front end may answer a retried batch from it
// without a roll. A no proves nothing; the commit decides.
func (l *Log) Committed(topic, topicID string, partition int32, b ProducerBatch) (base int64, ok bool) {
	l.View(func(s *State) {
		p, err := s.partition(topic, topicID, partition)
		if err != nil {
			return
		}
		ps := p.Producers[b.ID]
		if ps == nil || ps.Epoch != b.Epoch {
			return
		}
		var sb SeqBatch
		if sb, ok = ps.find(b.FirstSeq, b.LastSeq); ok {
			base = sb.Base
		}
	})
	return base, ok
}

// hasProducers reports whether s holds state only version 2 can hold.
func (s *State) hasProducers() bool {
	if s.NextProducerID != 0 || s.ProducerLimits != (ProducerLimits{}) {
		return true
	}
	for _, t := range s.Topics {
		for _, p := range t.Parts {
			if len(p.Producers) > 0 {
				return true
			}
		}
	}
	return false
}

// downgrade drops the producer state of a version 1 checkpoint, which a
// node reading only version 1 ignores. The clock stays: it is kept in
// version 1 checkpoints too, and only producers use it.
func (s *State) downgrade() {
	s.NextProducerID, s.ProducerLimits = 0, ProducerLimits{}
	for _, t := range s.Topics {
		if t == nil {
			continue
		}
		for _, p := range t.Parts {
			if p != nil {
				p.Producers = nil
			}
		}
	}
}
