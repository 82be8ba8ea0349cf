package manifest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
)

// CreateTopic commits a new topic. It fails with ErrTopicExists only
// after catching up with the log, so a topic another node deleted can be
// created again on a node that has not looked since, and with
// ErrPartitionLimit when the cluster would have more than MaxPartitions.
func (l *Log) CreateTopic(ctx context.Context, name string, partitions int32, ret Retention) (Topic, error) {
	if err := ValidateTopic(name, partitions); err != nil {
		return Topic{}, err
	}
	t := Topic{Name: name, ID: randomID(), Partitions: partitions, Retention: ret, CreatedMs: l.opts.Now().UnixMilli()}
	for synced := false; ; synced = true {
		_, err := l.commit(ctx, func(s *State, _ int64) ([]Op, error) {
			if _, ok := s.Topics[name]; ok {
				return nil, fmt.Errorf("%w: %q", ErrTopicExists, name)
			}
			var total int64
			for _, t := range s.Topics {
				total += int64(t.Partitions)
			}
			if total+int64(partitions) > l.opts.MaxPartitions {
				return nil, fmt.Errorf("%w: %w: the cluster has %d partitions, %d more would pass the limit of %d", ErrInvalidTopic, ErrPartitionLimit, total, partitions, l.opts.MaxPartitions)
			}
			return []Op{{CreateTopic: &t}}, nil
		})
		if synced || !errors.Is(err, ErrTopicExists) {
			return t, err
		}
		if err := l.Sync(ctx); err != nil {
			return Topic{}, err
		}
	}
}

// DeleteTopic commits the deletion of a topic. Its objects stay until the
// compactor collects them. It catches up with the log first, so a topic
// another node just created can be deleted on a node that has not looked
// since.
func (l *Log) DeleteTopic(ctx context.Context, name string) error {
	if err := l.Sync(ctx); err != nil {
		return err
	}
	_, err := l.commit(ctx, func(s *State, _ int64) ([]Op, error) {
		t, ok := s.Topics[name]
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownTopic, name)
		}
		return []Op{{DeleteTopic: &TopicRef{Name: name, ID: t.ID}}}, nil
	})
	return err
}

// Topic returns a topic's configuration. A name this node does not know
// may have been created on another node since it last looked, so it
// catches up with the log once before answering ErrUnknownTopic.
func (l *Log) Topic(ctx context.Context, name string) (Topic, error) {
	for synced := false; ; synced = true {
		var t Topic
		var ok bool
		l.View(func(s *State) {
			var ts *TopicState
			if ts, ok = s.Topics[name]; ok {
				t = ts.Topic
			}
		})
		if ok {
			return t, nil
		}
		if synced {
			return Topic{}, fmt.Errorf("%w %q", ErrUnknownTopic, name)
		}
		if err := l.Sync(ctx); err != nil {
			return Topic{}, err
		}
	}
}

// Topics returns every topic, sorted by name.
func (l *Log) Topics() []Topic {
	var out []Topic
	l.View(func(s *State) {
		for _, t := range s.Topics {
			out = append(out, t.Topic)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// PartitionInfo summarizes a partition.
type PartitionInfo struct {
	Partition int32 `json:"partition"`
	Start     int64 `json:"start_offset"`
	End       int64 `json:"end_offset"`
	Bytes     int64 `json:"bytes"`
	Objects   int   `json:"objects"`
}

// Describe returns a topic and a summary of each partition.
func (l *Log) Describe(name string) (Topic, []PartitionInfo, error) {
	var (
		t   Topic
		out []PartitionInfo
		err error
	)
	l.View(func(s *State) {
		ts, ok := s.Topics[name]
		if !ok {
			err = fmt.Errorf("%w %q", ErrUnknownTopic, name)
			return
		}
		t = ts.Topic
		for i, p := range ts.Parts {
			out = append(out, PartitionInfo{Partition: int32(i), Start: p.Start, End: p.End, Bytes: p.Bytes, Objects: p.objects()})
		}
	})
	return t, out, err
}

// Locate returns the partition's start and end offsets and up to max
// entries (copied) starting with the one that holds offset. Entries from a
// sealed page stop at the page's end; the caller asks again from there.
func (l *Log) Locate(ctx context.Context, topic string, partition int32, offset int64, max int) (start, end int64, entries []Entry, err error) {
	if max < 0 {
		return 0, 0, nil, fmt.Errorf("locate %d entries: %w: want 0 or more", max, ErrOutOfRange)
	}
	var ref PageRef
	var paged bool
	l.View(func(s *State) {
		var p *Partition
		if p, err = s.partition(topic, "", partition); err != nil {
			return
		}
		start, end = p.Start, p.End
		if ref, paged = p.page(offset); paged {
			return
		}
		i := findEntry(p.Entries, offset)
		entries = slices.Clone(p.Entries[i:min(len(p.Entries), i+max)])
	})
	if err != nil || !paged {
		return start, end, entries, err
	}
	es, err := l.loadPage(ctx, ref)
	if err != nil {
		return 0, 0, nil, err
	}
	i := findEntry(es, offset)
	return start, end, slices.Clone(es[i:min(len(es), i+max)]), nil
}

// FindTime returns the offset of the first entry whose records may have a
// timestamp at or after ts (its max timestamp is >= ts), or the end offset
// if there is none. The caller scans that entry for the exact record.
// Offsets below the partition's start are not considered: an entry that
// straddles the start answers the start.
//
// Timestamps are set by producers and need not grow with offsets, so this
// scans page summaries and then entries in offset order; it reads a page
// only when the page's max timestamp says it holds a match.
func (l *Log) FindTime(ctx context.Context, topic string, partition int32, ts int64) (int64, error) {
	var (
		off, start int64
		err        error
		pages      []PageRef
	)
	l.View(func(s *State) {
		var p *Partition
		if p, err = s.partition(topic, "", partition); err != nil {
			return
		}
		off, start = p.End, p.Start
		for i, pg := range p.Pages {
			if pg.MaxTs >= ts && pg.End > start {
				pages = slices.Clone(p.Pages[i:])
				break
			}
		}
		for _, e := range p.Entries {
			if e.MaxTs >= ts && e.End() > start {
				off = max(e.Base, start)
				return
			}
		}
	})
	if err != nil {
		return 0, err
	}
	for _, ref := range pages {
		if ref.MaxTs < ts || ref.End <= start {
			continue
		}
		es, err := l.loadPage(ctx, ref)
		if err != nil {
			return 0, err
		}
		for _, e := range es {
			if e.MaxTs >= ts && e.End() > start {
				return max(e.Base, start), nil
			}
		}
	}
	return off, nil
}

// PendingPart is one partition's share of an object waiting to be
// committed: everything but the base offset, which the commit assigns.
type PendingPart struct {
	Topic     string
	TopicID   string // the incarnation the records were accepted for; empty accepts any
	Partition int32
	Span
	// Producers are the idempotent batches among the part's rows, in row
	// order (Delta relative to the part).
	Producers []ProducerBatch
}

// PendingObject is one uploaded object waiting to be committed.
type PendingObject struct {
	Key   string
	Size  int64
	Parts []PendingPart
}

// AppendResult gives each pending part's base offset, or the error that
// kept it out of the commit: its topic was deleted meanwhile, or (ErrRetry)
// one of its producer batches was a duplicate or invalid.
type AppendResult struct {
	Base []int64 // per part, parallel to PendingObject.Parts
	Err  []error
	// Producers gives the outcome of each producer batch of a part,
	// parallel to PendingPart.Producers: for a committed part, each
	// batch's base offset; for a part refused for its producer batches,
	// the original offset of a duplicate, the error of an invalid batch,
	// and ErrRetry for the others. Nil for a part without producer
	// batches, or refused for another reason (Err says).
	Producers [][]ProducerResult
}

// Append commits objects, in order, in one record (group commit). Parts
// whose topic or partition no longer exists, or that would not pass the
// check every node applies to a record, are left out and reported.
//
// Producer batches are judged on the state the record lands on, on every
// attempt (a lost race rebuilds the record on the newer state), so a batch
// committed by any node before is a duplicate here. A part with a
// duplicate or invalid batch is left out whole: its rows are contiguous
// offsets, so it cannot be committed in part.
//
// A record that lands proves the state its parts were judged on was the
// latest. When nothing is left to write, nothing proves it: a batch judged
// unknown or out of sequence on a node that is behind may be fine on the
// latest state. So such a judgement is made again after catching up.
func (l *Log) Append(ctx context.Context, objs []PendingObject) ([]AppendResult, error) {
	for synced := false; ; synced = true {
		res, rec, refused, err := l.append(ctx, objs)
		if err != nil || rec != nil || !refused || synced {
			return res, err
		}
		if err := l.Sync(ctx); err != nil {
			return nil, err
		}
	}
}

// append builds and commits one record for Append; refused says whether a
// part was left out for its producer batches.
func (l *Log) append(ctx context.Context, objs []PendingObject) (results []AppendResult, rec *Commit, refused bool, err error) {
	rec, err = l.commit(ctx, func(s *State, timeMs int64) ([]Op, error) {
		refused = false
		results = make([]AppendResult, len(objs))
		ov := newOverlay(s, s.Seq+1, timeMs)
		// retried are the producers (per partition) with a batch left
		// out of this commit only because of another batch: a later batch
		// of theirs is out of sequence because of that, so it is answered
		// with ErrRetry too, which clients retry in order.
		retried := map[prodKey]bool{}
		var ops []Op
		for i, o := range objs {
			r := AppendResult{Base: make([]int64, len(o.Parts)), Err: make([]error, len(o.Parts)), Producers: make([][]ProducerResult, len(o.Parts))}
			results[i] = r
			if err := ov.object(o.Key, o.Size); err != nil {
				for j := range r.Err {
					r.Err[j] = err
				}
				continue
			}
			op := &AppendOp{Object: o.Key, Size: o.Size}
			seen := map[partKey]bool{}
			for j, pp := range o.Parts {
				if _, err := s.partition(pp.Topic, pp.TopicID, pp.Partition); err != nil {
					r.Err[j] = err
					continue
				}
				t := s.Topics[pp.Topic]
				part := AppendPart{Topic: pp.Topic, TopicID: t.ID, Partition: pp.Partition, Base: ov.end(&t.Topic, pp.Partition), Span: pp.Span, Producers: pp.Producers}
				pres, err := ov.part(o.Size, &part, seen)
				if errors.Is(err, errProducerBatch) {
					refused = true
					r.Err[j] = ErrRetry
					for k, b := range pp.Producers {
						key := prodKey{t.ID, pp.Partition, b.ID}
						switch {
						case errors.Is(pres[k].Err, ErrRetry):
							retried[key] = true
						case retried[key] && errors.Is(pres[k].Err, ErrOutOfOrderSequence):
							pres[k].Err = ErrRetry
						}
					}
					r.Producers[j] = pres
					continue
				}
				if err != nil {
					r.Err[j] = fmt.Errorf("append %s: %w", o.Key, err)
					continue
				}
				r.Base[j] = part.Base
				r.Producers[j] = pres
				op.Parts = append(op.Parts, part)
			}
			if len(op.Parts) > 0 {
				ops = append(ops, Op{Append: op})
			}
		}
		return ops, nil
	})
	return results, rec, refused, err
}

// ErrOffsetOutOfRange is returned by Trim for an offset past the
// partition's end.
var ErrOffsetOutOfRange = errors.New("offset out of range")

// AddPartitions grows a topic to partitions partitions: the new ones start
// empty at offset 0 and existing ones keep their offsets. A count not above
// the current one fails with ErrInvalidTopic, one that would pass the
// cluster's MaxPartitions with ErrPartitionLimit. With validateOnly it
// checks against the latest state and commits nothing.
func (l *Log) AddPartitions(ctx context.Context, name string, partitions int32, validateOnly bool) (Topic, error) {
	var t Topic
	err := l.admin(ctx, validateOnly, func(s *State) ([]Op, error) {
		ts, ok := s.Topics[name]
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownTopic, name)
		}
		if err := ValidateTopic(name, partitions); err != nil {
			return nil, err
		}
		if partitions <= ts.Partitions {
			return nil, fmt.Errorf("%w: topic %q has %d partitions; partitions can be added, not removed", ErrInvalidTopic, name, ts.Partitions)
		}
		var total int64
		for _, t := range s.Topics {
			total += int64(t.Partitions)
		}
		if add := int64(partitions - ts.Partitions); total+add > l.opts.MaxPartitions {
			return nil, fmt.Errorf("%w: %w: the cluster has %d partitions, %d more would pass the limit of %d", ErrInvalidTopic, ErrPartitionLimit, total, add, l.opts.MaxPartitions)
		}
		t = ts.Topic
		t.Partitions = partitions
		return []Op{{AddPartitions: &AddPartitionsOp{Name: name, ID: ts.ID, Partitions: partitions}}}, nil
	})
	return t, err
}

// SetRetention sets a topic's retention: a nil value keeps the current
// one. It is decided on the latest state, so two nodes changing different
// values do not undo each other. With validateOnly it commits nothing.
func (l *Log) SetRetention(ctx context.Context, name string, ms, bytes *int64, validateOnly bool) (Topic, error) {
	var t Topic
	err := l.admin(ctx, validateOnly, func(s *State) ([]Op, error) {
		ts, ok := s.Topics[name]
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownTopic, name)
		}
		t = ts.Topic
		if ms != nil {
			t.Retention.Ms = *ms
		}
		if bytes != nil {
			t.Retention.Bytes = *bytes
		}
		if t.Retention == ts.Retention {
			return nil, nil
		}
		return []Op{{SetTopicConfig: &TopicConfigOp{Name: name, ID: ts.ID, Retention: t.Retention}}}, nil
	})
	return t, err
}

// TrimToEnd asks Trim for the partition's end offset at the time of the
// commit (Kafka's DeleteRecords offset -1, the high watermark).
const TrimToEnd = -1

// TrimRequest asks to advance one partition's start offset to Offset, or
// to its end offset at the time of the commit (TrimToEnd).
type TrimRequest struct {
	Topic     string
	Partition int32
	Offset    int64
}

// TrimResult is a partition's start offset after a trim, or why it was not
// trimmed.
type TrimResult struct {
	Start int64
	Err   error
}

// Trim advances partitions' start offsets, in one commit, and returns
// each start offset after it (parallel to reqs). An offset at or below the
// current start changes nothing (the start never goes back); one past the
// end fails with ErrOffsetOutOfRange, an unknown topic or partition with
// ErrUnknownTopic or ErrUnknownPartition; the others are committed. Readers
// refuse offsets below the start from then on; the records stay in their
// objects until the compactor reclaims them. The error is the commit's:
// then no partition was trimmed.
func (l *Log) Trim(ctx context.Context, reqs []TrimRequest) ([]TrimResult, error) {
	var res []TrimResult
	err := l.admin(ctx, false, func(s *State) ([]Op, error) {
		res = make([]TrimResult, len(reqs))
		starts := map[*Partition]int64{} // after the requests so far
		var ops []Op
		for i, r := range reqs {
			p, err := s.partition(r.Topic, "", r.Partition)
			if err != nil {
				res[i].Err = err
				continue
			}
			start, ok := starts[p]
			if !ok {
				start = p.Start
			}
			to := r.Offset
			if to == TrimToEnd {
				to = p.End
			}
			if to < 0 || to > p.End {
				res[i].Err = fmt.Errorf("trim %s/%d to %d: %w: offsets are %d to %d", r.Topic, r.Partition, to, ErrOffsetOutOfRange, start, p.End)
				continue
			}
			if res[i].Start = start; to <= start {
				continue
			}
			res[i].Start, starts[p] = to, to
			ops = append(ops, Op{Trim: &TrimOp{Topic: r.Topic, TopicID: s.Topics[r.Topic].ID, Partition: r.Partition, Start: to}})
		}
		return ops, nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// admin runs build for a topic admin change after catching up with the
// log, so it is judged on what other nodes committed too, and commits its
// operations unless validateOnly; then it only checks them as a commit
// would.
func (l *Log) admin(ctx context.Context, validateOnly bool, build func(s *State) ([]Op, error)) error {
	if err := l.Sync(ctx); err != nil {
		return err
	}
	if !validateOnly {
		_, err := l.commit(ctx, func(s *State, _ int64) ([]Op, error) { return build(s) })
		return err
	}
	var err error
	l.View(func(s *State) {
		var ops []Op
		if ops, err = build(s); err != nil || len(ops) == 0 {
			return
		}
		err = s.checkCommit(&Commit{Version: commitVersion(ops), Seq: s.Seq + 1, TimeMs: l.opts.Now().UnixMilli(), Ops: ops})
	})
	return err
}

// TopicPartition returns a topic's configuration after checking that it
// has partition. A topic or partition this node does not know may have
// been created or added on another node since it last looked, so it
// catches up with the log once before answering ErrUnknownTopic or
// ErrUnknownPartition. Front ends check a request's partition with it.
func (l *Log) TopicPartition(ctx context.Context, name string, partition int32) (Topic, error) {
	for synced := false; ; synced = true {
		t, err := l.Topic(ctx, name)
		if err != nil {
			return t, err // Topic caught up already
		}
		if partition >= 0 && partition < t.Partitions {
			return t, nil
		}
		if synced || partition < 0 {
			return t, fmt.Errorf("%w %d of topic %q: valid partitions are 0 to %d", ErrUnknownPartition, partition, name, t.Partitions-1)
		}
		if err := l.Sync(ctx); err != nil {
			return Topic{}, err
		}
	}
}
