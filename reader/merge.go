// Package reader serves reads of a partition by offset or time, merging
// the node's hot segments and the store's objects into one contiguous
// sequence of committed records.
package reader

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/shalelog/shale/cache"
	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/manifest"
	"github.com/shalelog/shale/tier/object"
)

// ErrOffsetOutOfRange is returned for an offset below the partition's start
// or above its end.
var ErrOffsetOutOfRange = errors.New("offset out of range")

// ErrInvalid is returned for a read whose arguments are out of their
// valid range (a negative count or byte limit); the error names the range.
var ErrInvalid = errors.New("invalid read")

// ErrStore wraps a store failure or a store call that did not answer
// within Options.StoreTimeout. It is ingest.ErrStore: one sentinel for an
// unavailable store on the write and read paths, which front ends map to
// one status (503 in HTTP).
var ErrStore = ingest.ErrStore

// Hot is the local source of freshly committed records: the ingest node's
// committed hot segments. HotRecords returns ok=false when it does not hold
// the object.
type Hot interface {
	HotRecords(key, topic string, partition int32, from int64, maxRecords, maxBytes int) ([]record.Record, bool, error)
	Holds(key string) bool
}

// Merge reads partitions. It is safe for concurrent use.
type Merge struct {
	log   *manifest.Log
	store tier.Store
	hot   Hot // may be nil
	cache *cache.Cache

	timeout time.Duration // Options.StoreTimeout

	flight singleflight.Group
	fetch  chan struct{} // bounds concurrent store reads, and so their memory
}

// Options configure a Merge.
type Options struct {
	// StoreTimeout bounds each store call of a read (commit log catch-up,
	// index pages, object GETs, shared whole-object fetches included): a
	// call that has not answered by then fails with ErrStore. Zero means
	// DefaultStoreTimeout.
	StoreTimeout time.Duration
}

// DefaultStoreTimeout is ingest's default store timeout.
var DefaultStoreTimeout = ingest.DefaultOptions().StoreTimeout

// EntriesPerRead bounds the entries one read looks at, and StoreEntriesPerRead
// those of them it may take from the store (the rest come from hot
// segments). Reads return less than their byte limit rather than sweep
// many objects: consumers of many partitions then advance through the same
// few objects together, which the cache can hold, instead of each sweeping
// a window larger than it (a rolled object holds a small part of each of
// many partitions).
const (
	EntriesPerRead      = 16
	StoreEntriesPerRead = 1
)

// MaxFetches bounds a node's concurrent object reads.
const MaxFetches = 16

// New returns a Merge over the log's committed state.
func New(log *manifest.Log, store tier.Store, hot Hot, c *cache.Cache, opts Options) *Merge {
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = DefaultStoreTimeout
	}
	return &Merge{log: log, store: store, hot: hot, cache: c, timeout: opts.StoreTimeout, fetch: make(chan struct{}, MaxFetches)}
}

// bounded returns ctx bounded by the store timeout, for one store call.
func (m *Merge) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.timeout)
}

// storeErr marks err, from a store call made under ctx, as ErrStore unless
// it is an answer rather than a failure to get one: an unknown topic or
// partition, a missing object, corruption, or the caller's own ctx ending.
func storeErr(ctx context.Context, err error) error {
	var ce *tier.CorruptError
	switch {
	case err == nil, ctx.Err() != nil, errors.Is(err, ErrStore),
		errors.Is(err, manifest.ErrUnknownTopic), errors.Is(err, manifest.ErrUnknownPartition),
		errors.Is(err, tier.ErrNotFound), errors.As(err, &ce):
		return err
	}
	return fmt.Errorf("%w: %w", ErrStore, err)
}

// locate is Log.Locate under the store timeout.
func (m *Merge) locate(ctx context.Context, topic string, partition int32, offset int64) (start, end int64, entries []manifest.Entry, err error) {
	sctx, cancel := m.bounded(ctx)
	defer cancel()
	start, end, entries, err = m.log.Locate(sctx, topic, partition, max(offset, 0), EntriesPerRead)
	return start, end, entries, storeErr(ctx, err)
}

// sync is Log.Sync under the store timeout.
func (m *Merge) sync(ctx context.Context) error {
	sctx, cancel := m.bounded(ctx)
	defer cancel()
	return storeErr(ctx, m.log.Sync(sctx))
}

// Result is one read.
type Result struct {
	Records []record.Record
	Start   int64 // the partition's first retained offset
	End     int64 // the partition's end offset (high watermark) when read
}

// Read returns committed records of a partition from offset on, at most
// maxRecords and about maxBytes (at least one record if any is available,
// however large). At the end of the partition it waits up to wait for new
// commits, from this node or any other.
//
// maxRecords and maxBytes of 0 mean 1000 and 1 MiB; negative ones are
// ErrInvalid. An offset outside the partition, a negative one included,
// is ErrOffsetOutOfRange naming the partition's range. Each store call
// is bounded by Options.StoreTimeout and fails with ErrStore.
func (m *Merge) Read(ctx context.Context, topic string, partition int32, offset int64, maxRecords, maxBytes int, wait time.Duration) (Result, error) {
	if maxRecords < 0 {
		return Result{}, fmt.Errorf("%w: max records %d: want 0 (the default, 1000) or more", ErrInvalid, maxRecords)
	}
	if maxBytes < 0 {
		return Result{}, fmt.Errorf("%w: max bytes %d: want 0 (the default, 1 MiB) or more", ErrInvalid, maxBytes)
	}
	if maxRecords == 0 {
		maxRecords = 1000
	}
	if maxBytes == 0 {
		maxBytes = 1 << 20
	}
	start, end, entries, err := m.locate(ctx, topic, partition, offset)
	if err != nil && !errors.Is(err, manifest.ErrUnknownTopic) && !errors.Is(err, manifest.ErrUnknownPartition) {
		return Result{}, err
	}
	if err != nil || offset >= end {
		// Another node may have committed past what this node has seen:
		// an offset acknowledged anywhere must be readable here.
		if err := m.sync(ctx); err != nil {
			return Result{}, err
		}
		if start, end, entries, err = m.locate(ctx, topic, partition, offset); err != nil {
			return Result{}, err
		}
	}
	if offset == end && wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		m.log.Wait(wctx, func(s *manifest.State) bool {
			t, ok := s.Topics[topic]
			return !ok || int(partition) >= len(t.Parts) || t.Parts[partition].End > offset
		})
		cancel()
		if start, end, entries, err = m.locate(ctx, topic, partition, offset); err != nil {
			return Result{}, err
		}
	}
	res := Result{Start: start, End: end}
	if offset < start || offset > end {
		return res, fmt.Errorf("%w: offset %d of %s/%d is outside [%d, %d]", ErrOffsetOutOfRange, offset, topic, partition, start, end)
	}
	next, bytes, stored := offset, 0, 0
	for _, e := range entries {
		if len(res.Records) >= maxRecords || (len(res.Records) > 0 && bytes >= maxBytes) {
			break
		}
		if stored >= StoreEntriesPerRead && len(res.Records) > 0 && !m.isHot(e.Object) {
			break
		}
		recs, hot, err := m.readEntry(ctx, topic, partition, &e, next-e.Base, maxRecords-len(res.Records), maxBytes-bytes)
		if err != nil {
			return res, err
		}
		if !hot {
			stored++
		}
		for _, r := range recs {
			r.Offset += e.Base
			if r.Offset != next {
				// Never return a gap or a duplicate: the index and the
				// object disagree, which only corruption can cause.
				return res, fmt.Errorf("read %s/%d: object %s yields offset %d where %d was expected", topic, partition, e.Object, r.Offset, next)
			}
			res.Records = append(res.Records, r)
			bytes += r.Size()
			next++
		}
		if next < e.End() {
			break // limits reached inside the entry
		}
	}
	return res, nil
}

// readEntry returns records of one entry from offset_delta from on, with
// offsets as deltas.
func (m *Merge) readEntry(ctx context.Context, topic string, partition int32, e *manifest.Entry, from int64, maxRecords, maxBytes int) (recs []record.Record, hot bool, err error) {
	if m.hot != nil {
		recs, ok, err := m.hot.HotRecords(e.Object, topic, partition, from, maxRecords, maxBytes)
		if err != nil {
			return nil, false, err
		}
		if ok {
			return recs, true, nil
		}
	}
	recs, err = m.storeEntry(ctx, e, from, maxRecords, maxBytes)
	return recs, false, err
}

func (m *Merge) isHot(key string) bool { return m.hot != nil && m.hot.Holds(key) }

// storeEntry reads an entry's records from its object.
func (m *Merge) storeEntry(ctx context.Context, e *manifest.Entry, from int64, maxRecords, maxBytes int) ([]record.Record, error) {
	var out []record.Record
	bytes := 0
	for _, b := range e.Batches {
		if b.Delta+b.Rows <= from {
			continue
		}
		recs, err := m.batch(ctx, e, b)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if r.Offset < from {
				continue
			}
			if len(out) >= maxRecords || (len(out) > 0 && bytes+r.Size() > maxBytes) {
				return out, nil
			}
			out = append(out, r)
			bytes += r.Size()
		}
	}
	return out, nil
}

// WholeObjectBytes is the size up to which an object is fetched whole and
// cached, rather than batch by batch. A rolled object holds many partitions'
// small parts; reading them one ranged GET each would cost a request per
// partition per object when consumers catch up, where one GET serves them
// all. Compacted per-partition objects are larger and read by range.
const WholeObjectBytes = 32 << 20

// batch returns one decoded batch. Its bytes come from the cache or the
// store and are checked against the batch's CRC32C before decoding, on
// every use.
func (m *Merge) batch(ctx context.Context, e *manifest.Entry, b object.Batch) ([]record.Record, error) {
	data, err := m.batchBytes(ctx, e, b)
	if err != nil {
		return nil, err
	}
	return object.DecodeBatch(e.Object, b, data)
}

func (m *Merge) batchBytes(ctx context.Context, e *manifest.Entry, b object.Batch) ([]byte, error) {
	whole := cache.Key{Object: e.Object, Len: -1}
	if data, ok := m.cache.Get(whole); ok && int64(len(data)) >= b.Off+b.Len {
		return data[b.Off : b.Off+b.Len], nil
	}
	if e.ObjectSize > 0 && e.ObjectSize <= WholeObjectBytes && e.ObjectSize <= m.cache.Cap()/4 {
		// Concurrent readers of one object share one GET. It runs detached
		// from the first caller's context (bounded by its own timeout), so
		// one client going away does not fail the others.
		ch := m.flight.DoChan(e.Object, func() (any, error) {
			if data, ok := m.cache.Get(whole); ok {
				return data, nil
			}
			fctx, cancel := m.bounded(context.WithoutCancel(ctx))
			defer cancel()
			release, err := m.acquire(fctx)
			if err != nil {
				return nil, fmt.Errorf("%w: read object %s: waiting for a fetch slot: %w", ErrStore, e.Object, err)
			}
			defer release()
			data, _, err := m.store.Get(fctx, e.Object, 0, -1)
			if err != nil {
				return nil, storeErr(context.Background(), fmt.Errorf("read object %s: %w", e.Object, err))
			}
			m.cache.Add(whole, data)
			return data, nil
		})
		var res singleflight.Result
		select {
		case res = <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if res.Err != nil {
			return nil, res.Err
		}
		data := res.Val.([]byte)
		if int64(len(data)) < b.Off+b.Len {
			return nil, &tier.CorruptError{What: "object", Key: e.Object, Offset: int64(len(data)), Err: fmt.Errorf("object is %d bytes, batch ends at %d", len(data), b.Off+b.Len)}
		}
		return data[b.Off : b.Off+b.Len], nil
	}
	k := cache.Key{Object: e.Object, Off: b.Off, Len: b.Len}
	if data, ok := m.cache.Get(k); ok {
		return data, nil
	}
	sctx, cancel := m.bounded(ctx)
	defer cancel()
	release, err := m.acquire(sctx)
	if err != nil {
		return nil, storeErr(ctx, fmt.Errorf("read object %s: waiting for a fetch slot: %w", e.Object, err))
	}
	defer release()
	data, _, err := m.store.Get(sctx, e.Object, b.Off, b.Len)
	if err != nil {
		return nil, storeErr(ctx, fmt.Errorf("read object %s bytes %d+%d: %w", e.Object, b.Off, b.Len, err))
	}
	m.cache.Add(k, data)
	return data, nil
}

func (m *Merge) acquire(ctx context.Context) (func(), error) {
	select {
	case m.fetch <- struct{}{}:
		return func() { <-m.fetch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// OffsetForTime returns the first offset whose record has a timestamp at or
// after ts (milliseconds), or the partition's end offset if there is none.
func (m *Merge) OffsetForTime(ctx context.Context, topic string, partition int32, ts int64) (int64, error) {
	findTime := func() (int64, error) {
		sctx, cancel := m.bounded(ctx)
		defer cancel()
		off, err := m.log.FindTime(sctx, topic, partition, ts)
		return off, storeErr(ctx, err)
	}
	off, err := findTime()
	if errors.Is(err, manifest.ErrUnknownTopic) || errors.Is(err, manifest.ErrUnknownPartition) {
		// Perhaps created on another node since this one last looked.
		if err := m.sync(ctx); err != nil {
			return 0, err
		}
		off, err = findTime()
	}
	if err != nil {
		return 0, err
	}
	_, end, entries, err := m.locate(ctx, topic, partition, off)
	if err != nil || off >= end || len(entries) == 0 {
		return off, err
	}
	e := entries[0]
	recs, _, err := m.readEntry(ctx, topic, partition, &e, off-e.Base, int(e.Count), math.MaxInt)
	if err != nil {
		return 0, err
	}
	for _, r := range recs {
		if r.Timestamp >= ts {
			return e.Base + r.Offset, nil
		}
	}
	return e.End(), nil
}
