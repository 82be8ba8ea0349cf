package manifest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"
)

// CreateTopic commits a new topic.
func (l *Log) CreateTopic(ctx context.Context, name string, partitions int32, ret Retention) (Topic, error) {
	if err := ValidateTopic(name, partitions); err != nil {
		return Topic{}, err
	}
	t := Topic{Name: name, ID: randomID(), Partitions: partitions, Retention: ret, CreatedMs: time.Now().UnixMilli()}
	_, err := l.commit(ctx, func(s *State) ([]Op, error) {
		if _, ok := s.Topics[name]; ok {
			return nil, fmt.Errorf("%w: %q", ErrTopicExists, name)
		}
		return []Op{{CreateTopic: &t}}, nil
	})
	return t, err
}

// DeleteTopic commits the deletion of a topic. Its objects stay until the
// compactor collects them.
func (l *Log) DeleteTopic(ctx context.Context, name string) error {
	_, err := l.commit(ctx, func(s *State) ([]Op, error) {
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
	es, err := l.loadPage(ctx, ref.Key)
	if err != nil {
		return 0, 0, nil, err
	}
	i := findEntry(es, offset)
	return start, end, slices.Clone(es[i:min(len(es), i+max)]), nil
}

// FindTime returns the offset of the first entry whose records may have a
// timestamp at or after ts (its max timestamp is >= ts), or the end offset
// if there is none. The caller scans that entry for the exact record.
//
// Timestamps are set by producers and need not grow with offsets, so this
// scans page summaries and then entries in offset order; it reads at most
// one page.
func (l *Log) FindTime(ctx context.Context, topic string, partition int32, ts int64) (int64, error) {
	var (
		off  int64
		err  error
		ref  PageRef
		page bool
	)
	l.View(func(s *State) {
		var p *Partition
		if p, err = s.partition(topic, "", partition); err != nil {
			return
		}
		off = p.End
		for _, pg := range p.Pages {
			if pg.MaxTs >= ts {
				ref, page = pg, true
				return
			}
		}
		for _, e := range p.Entries {
			if e.MaxTs >= ts {
				off = e.Base
				return
			}
		}
	})
	if err != nil || !page {
		return off, err
	}
	es, err := l.loadPage(ctx, ref.Key)
	if err != nil {
		return 0, err
	}
	for _, e := range es {
		if e.MaxTs >= ts {
			return e.Base, nil
		}
	}
	return ref.End, nil
}

// PendingPart is one partition's share of an object waiting to be
// committed: everything but the base offset, which the commit assigns.
type PendingPart struct {
	Topic     string
	TopicID   string // the incarnation the records were accepted for; empty accepts any
	Partition int32
	Span
}

// PendingObject is one uploaded object waiting to be committed.
type PendingObject struct {
	Key   string
	Size  int64
	Parts []PendingPart
}

// AppendResult gives each pending part's base offset, or the error that
// kept it out of the commit (its topic was deleted meanwhile).
type AppendResult struct {
	Base []int64 // per part, parallel to PendingObject.Parts
	Err  []error
}

// Append commits objects, in order, in one record (group commit). Parts
// whose topic or partition no longer exists are left out and reported.
func (l *Log) Append(ctx context.Context, objs []PendingObject) ([]AppendResult, error) {
	var results []AppendResult
	_, err := l.commit(ctx, func(s *State) ([]Op, error) {
		results = make([]AppendResult, len(objs))
		ends := map[*Partition]int64{}
		var ops []Op
		for i, o := range objs {
			r := AppendResult{Base: make([]int64, len(o.Parts)), Err: make([]error, len(o.Parts))}
			op := &AppendOp{Object: o.Key, Size: o.Size}
			for j, pp := range o.Parts {
				p, err := s.partition(pp.Topic, pp.TopicID, pp.Partition)
				if err != nil {
					r.Err[j] = err
					continue
				}
				end, ok := ends[p]
				if !ok {
					end = p.End
				}
				ends[p] = end + pp.Count
				r.Base[j] = end
				t := s.Topics[pp.Topic]
				op.Parts = append(op.Parts, AppendPart{Topic: pp.Topic, TopicID: t.ID, Partition: pp.Partition, Base: end, Span: pp.Span})
			}
			results[i] = r
			if len(op.Parts) > 0 {
				ops = append(ops, Op{Append: op})
			}
		}
		return ops, nil
	})
	return results, err
}
