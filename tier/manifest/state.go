// Package manifest is shale's commit log: the only mutable metadata, kept in
// the bucket as numbered, immutable commit records that any node may append
// with a create-if-absent write, plus periodic checkpoints. Replaying the log
// gives every node the same topics and the same offset index. The layouts
// are in docs/format/manifest.md; the protocol in docs/design.md.
package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"

	"github.com/shalelog/shale/tier/object"
)

var (
	// ErrUnknownTopic is returned for a topic that does not exist (or was
	// deleted while a request for it was in flight).
	ErrUnknownTopic = errors.New("unknown topic")
	// ErrUnknownPartition is returned for a partition outside the topic.
	ErrUnknownPartition = errors.New("unknown partition")
	// ErrTopicExists is returned when creating a topic whose name is taken.
	ErrTopicExists = errors.New("topic already exists")
	// ErrInvalidTopic is wrapped by topic validation errors.
	ErrInvalidTopic = errors.New("invalid topic")
	// ErrPartitionLimit is returned (with ErrInvalidTopic) by CreateTopic
	// when the cluster would have more partitions than its limit
	// (Options.MaxPartitions). Front ends answer it as a bad request.
	ErrPartitionLimit = errors.New("cluster partition limit reached")
	// ErrOutOfRange is wrapped by errors for a count outside its range.
	ErrOutOfRange = errors.New("out of range")
)

// MaxPartitions bounds a topic's partition count.
const MaxPartitions = 100000

var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// ValidateTopic checks a topic name and partition count with Kafka's rules.
func ValidateTopic(name string, partitions int32) error {
	if !topicName.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("%w: name %q must be 1-249 characters of a-z, A-Z, 0-9, '.', '_' or '-', and not '.' or '..'", ErrInvalidTopic, name)
	}
	if partitions < 1 || partitions > MaxPartitions {
		return fmt.Errorf("%w: partition count %d must be between 1 and %d", ErrInvalidTopic, partitions, MaxPartitions)
	}
	return nil
}

// Retention is a topic's retention setting, enforced by the compactor. A
// negative value means unlimited.
type Retention struct {
	Ms    int64 `json:"ms"`
	Bytes int64 `json:"bytes"`
}

// Topic is a topic's configuration.
type Topic struct {
	Name       string    `json:"name"`
	ID         string    `json:"id"` // distinguishes a re-created topic from a deleted one of the same name
	Partitions int32     `json:"partitions"`
	Retention  Retention `json:"retention"`
	CreatedMs  int64     `json:"created_ms"`
}

// Entry locates one partition's records inside one object: offsets
// [Base, Base+Count) are rows offset_delta 0..Count-1 of that partition's
// part of Object.
type Entry struct {
	Object     string `json:"object"`
	ObjectSize int64  `json:"object_size"` // bytes of the whole object
	Base       int64  `json:"base"`
	Span
}

// Span describes one partition's records in one object, apart from where
// they start.
type Span struct {
	Count   int64   `json:"count"`
	MinTs   int64   `json:"min_ts"`
	MaxTs   int64   `json:"max_ts"`
	Bytes   int64   `json:"bytes"` // the part's bytes in the object
	Batches Batches `json:"batches"`
}

// End is the offset after the entry's last record.
func (e *Entry) End() int64 { return e.Base + e.Count }

// Batches is the per-batch index of an entry, persisted compactly as arrays
// [delta, rows, off, len, crc32c].
type Batches []object.Batch

func (bs Batches) MarshalJSON() ([]byte, error) {
	a := make([][5]int64, len(bs))
	for i, b := range bs {
		a[i] = [5]int64{b.Delta, b.Rows, b.Off, b.Len, int64(b.CRC)}
	}
	return json.Marshal(a)
}

func (bs *Batches) UnmarshalJSON(data []byte) error {
	var a [][5]int64
	if err := json.Unmarshal(data, &a); err != nil {
		return err
	}
	*bs = make(Batches, len(a))
	for i, v := range a {
		(*bs)[i] = object.Batch{Delta: v[0], Rows: v[1], Off: v[2], Len: v[3], CRC: uint32(v[4])}
	}
	return nil
}

// Partition is one partition's offsets and object index. The index is
// Pages (older entries, sealed into immutable page objects and read only
// when a read reaches them) followed by Entries (the tail, in memory).
type Partition struct {
	Start   int64     `json:"start"` // first offset still retained
	End     int64     `json:"end"`   // next offset to assign (the high watermark)
	Bytes   int64     `json:"bytes"`
	Pages   []PageRef `json:"pages,omitempty"` // sorted by Base, contiguous
	Entries []Entry   `json:"entries"`         // sorted by Base, contiguous, after the pages
	// Producers holds the idempotent producers' state, by producer id.
	Producers map[int64]*ProducerState `json:"producers,omitempty"`
}

// PageRef points at an index page: the entries for offsets [Base, End).
type PageRef struct {
	Key     string `json:"key"`
	Base    int64  `json:"base"`
	End     int64  `json:"end"`
	Entries int    `json:"entries"`
	MaxTs   int64  `json:"max_ts"`
}

// objects is the number of index entries, sealed or not.
func (p *Partition) objects() int {
	n := len(p.Entries)
	for _, pg := range p.Pages {
		n += pg.Entries
	}
	return n
}

// TopicState is a topic and its partitions.
type TopicState struct {
	Topic
	Parts []*Partition `json:"parts"`
}

// State is the result of replaying the log up to Seq.
type State struct {
	Seq    int64                  `json:"seq"`
	Topics map[string]*TopicState `json:"topics"`
	// ClockMs is the largest commit time applied: the clock producer
	// state expires by, the same on every node.
	ClockMs int64 `json:"clock_ms,omitempty"`
	// NextProducerID is the first producer id not yet reserved.
	NextProducerID int64          `json:"next_producer_id,omitempty"`
	ProducerLimits ProducerLimits `json:"producer_limits,omitempty"`

	prods *producerIndex // derived from Topics; built when first needed
}

func newState() *State { return &State{Topics: map[string]*TopicState{}} }

// partition returns the partition, checking the topic incarnation when id
// is not empty.
func (s *State) partition(topic, id string, p int32) (*Partition, error) {
	t, ok := s.Topics[topic]
	if !ok || (id != "" && t.ID != id) {
		return nil, fmt.Errorf("%w %q", ErrUnknownTopic, topic)
	}
	if p < 0 || p >= t.Partitions {
		return nil, fmt.Errorf("%w %d of topic %q: valid partitions are 0 to %d", ErrUnknownPartition, p, topic, t.Partitions-1)
	}
	return t.Parts[p], nil
}

// apply advances s by one commit record that passed checkCommit. It is
// deterministic: every node applying the same records gets the same state.
// Its own checks only keep a bug elsewhere from panicking the node.
func (s *State) apply(r *Commit) {
	// Producer lookups use the limits and clock the commit was checked
	// with: its own producer_limits take effect at its end.
	limits := s.ProducerLimits
	s.ClockMs = s.clockAt(r.TimeMs)
	for _, op := range r.Ops {
		switch {
		case op.CreateTopic != nil:
			t := *op.CreateTopic
			if _, exists := s.Topics[t.Name]; exists || t.Partitions < 0 {
				continue
			}
			ts := &TopicState{Topic: t, Parts: make([]*Partition, t.Partitions)}
			for i := range ts.Parts {
				ts.Parts[i] = &Partition{}
			}
			s.Topics[t.Name] = ts
		case op.DeleteTopic != nil:
			if t, ok := s.Topics[op.DeleteTopic.Name]; ok && t.ID == op.DeleteTopic.ID {
				s.dropTopicProducers(t)
				delete(s.Topics, t.Name)
			}
		case op.AddPartitions != nil:
			a := op.AddPartitions
			if t, ok := s.Topics[a.Name]; ok && t.ID == a.ID && a.Partitions > t.Partitions {
				for range a.Partitions - t.Partitions {
					t.Parts = append(t.Parts, &Partition{})
				}
				t.Partitions = a.Partitions
			}
		case op.SetTopicConfig != nil:
			if t, ok := s.Topics[op.SetTopicConfig.Name]; ok && t.ID == op.SetTopicConfig.ID {
				t.Retention = op.SetTopicConfig.Retention
			}
		case op.Trim != nil:
			tr := op.Trim
			if p, err := s.partition(tr.Topic, tr.TopicID, tr.Partition); err == nil && tr.Start > p.Start && tr.Start <= p.End {
				p.Start = tr.Start
			}
		case op.ProducerIDs != nil:
			s.NextProducerID = op.ProducerIDs.First + op.ProducerIDs.Count
		case op.ProducerLimits != nil:
			limits = *op.ProducerLimits
		case op.Append != nil:
			for _, pa := range op.Append.Parts {
				p, err := s.partition(pa.Topic, pa.TopicID, pa.Partition)
				if err != nil || pa.Base != p.End || pa.Count <= 0 {
					continue
				}
				p.Entries = append(p.Entries, Entry{Object: op.Append.Object, ObjectSize: op.Append.Size, Base: pa.Base, Span: pa.Span})
				p.End += pa.Count
				p.Bytes += pa.Bytes
				t := s.Topics[pa.Topic]
				for _, b := range pa.Producers {
					ps := s.live(p, b.ID, s.ClockMs)
					s.setProducer(t, pa.Partition, b.ID, advance(ps, b, pa.Base+b.Delta, r.Seq, s.ClockMs))
				}
			}
		}
	}
	s.ProducerLimits = limits
	s.pruneProducers()
	s.Seq = r.Seq
}

// findEntry returns the index of the entry holding offset in es, or len(es)
// if offset is at or past their end.
func findEntry(es []Entry, offset int64) int {
	return sort.Search(len(es), func(i int) bool { return es[i].End() > offset })
}

// page returns the page holding offset, if offset is before the tail.
func (p *Partition) page(offset int64) (PageRef, bool) {
	if len(p.Pages) == 0 || (len(p.Entries) > 0 && offset >= p.Entries[0].Base) {
		return PageRef{}, false
	}
	i := sort.Search(len(p.Pages), func(i int) bool { return p.Pages[i].End > offset })
	if i == len(p.Pages) {
		return PageRef{}, false
	}
	return p.Pages[i], true
}
