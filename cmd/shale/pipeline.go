package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/shalelog/shale/httpapi"
	"github.com/shalelog/shale/record"
)

// inRec is one record read from the input and the input line it came
// from (1-based). part is -1 when the pipeline chooses the partition.
type inRec struct {
	rec  record.Record
	line int64
	part int32
}

// chunk is what the input reader hands over: records read so far, and
// whether input is waiting behind them (when not, the pipeline sends what it
// has instead of waiting for full batches). A chunk with err ends input.
type chunk struct {
	recs []inRec
	more bool
	err  error
}

// batch is records of one partition sent in one request.
type batch struct {
	p     int32
	recs  []record.Record
	lines []int64
	bytes int
}

type sendFunc func(ctx context.Context, p int32, recs []record.Record) (httpapi.ProduceResult, error)

// pipeline produces records to the partitions of a topic in batches of at
// most maxBytes (encoded) and maxRecords, with up to inflight requests at
// once, one per partition: a partition's records are sent in input order and
// a batch is sent only after the previous batch of its partition was
// acknowledged, so they are never reordered. Records without a partition
// and key go to one partition until its batch is sent (Kafka's sticky
// partitioner), so batches stay large.
type pipeline struct {
	send       sendFunc
	partitions int32
	maxBytes   int
	maxRecords int
	inflight   int
	// maxPending bounds the bytes of records read but not yet sent, over
	// all partitions (default 64 MiB, at least two batches): keyed input
	// over many partitions would otherwise grow an open batch in each.
	maxPending int
	onAck      func(b *batch, res httpapi.ProduceResult) // called in acknowledgement order of each partition

	// State owned by run.
	queued  map[int32][]*batch // sealed batches, sent before open
	open    map[int32]*batch
	order   []int32 // partitions with queued or open records, in first-use order
	busy    map[int32]bool
	sending int
	sticky  int32
	pending int // bytes in queued and open batches
	peak    int // the most pending ever, for tests
	scratch []byte
	stats   pipeStats
}

// pipeStats is what a produce did.
type pipeStats struct {
	records    int64 // acknowledged
	bytes      int64 // acknowledged, encoded
	partitions map[int32]bool
	batches    int
	elapsed    time.Duration
	read       int64 // records read from the input
	// firstUnacked is the first input line not acknowledged, 0 if all were.
	firstUnacked int64
}

type result struct {
	b   *batch
	res httpapi.ProduceResult
	err error
}

// run produces what arrives on in until it closes. It stops at the first
// failed request or input error; in-flight requests finish first, so the
// statistics count every acknowledged record.
func (pl *pipeline) run(ctx context.Context, in <-chan chunk) (pipeStats, error) {
	start := time.Now()
	pl.queued, pl.open, pl.busy = map[int32][]*batch{}, map[int32]*batch{}, map[int32]bool{}
	pl.stats.partitions = map[int32]bool{}
	pl.sticky = rand.Int32N(pl.partitions)
	if pl.maxPending <= 0 {
		pl.maxPending = 64 << 20
	}
	pl.maxPending = max(pl.maxPending, 2*pl.maxBytes)
	results := make(chan result, pl.inflight)
	var (
		stash     []inRec // records not yet placed: their partition's batches are full
		more      = true  // input is waiting behind stash
		inputDone bool
		inputErr  error // ends input; records before it are still sent
		failed    error
		failures  []*batch
		done      = ctx.Done()
	)
	for {
		// Place what was read; a record that does not fit waits in stash and
		// input is not read until it is placed.
		for failed == nil && len(stash) > 0 && pl.place(stash[0]) {
			stash = stash[1:]
		}
		if failed == nil {
			// Partial batches go out when input has nothing more waiting,
			// or when input is held up (a full partition, or the pending
			// bound): then waiting longer fills nothing.
			pl.dispatch(ctx, results, !more || inputDone || len(stash) > 0)
		}
		if pl.sending == 0 && (failed != nil || inputDone && len(stash) == 0 && len(pl.order) == 0) {
			break
		}
		readable := in
		if failed != nil || inputDone || len(stash) > 0 {
			readable = nil
		}
		select {
		case c, ok := <-readable:
			if !ok {
				inputDone = true
				continue
			}
			stash, more = c.recs, c.more
			if n := len(c.recs); n > 0 {
				pl.stats.read = c.recs[n-1].line
			}
			if c.err != nil {
				inputDone, inputErr = true, c.err
			}
		case r := <-results:
			if err := pl.finish(r); err != nil {
				failures = append(failures, r.b)
				if failed == nil {
					failed = err
				}
			}
		case <-done:
			done = nil
			if failed == nil {
				failed = ctx.Err()
			}
		}
	}
	if failed == nil {
		failed = inputErr
	}
	pl.stats.elapsed = time.Since(start)
	// The first line not acknowledged: in a failed batch, or never sent.
	first := int64(0)
	note := func(line int64) {
		if first == 0 || line < first {
			first = line
		}
	}
	for _, b := range failures {
		note(b.lines[0])
	}
	for _, p := range pl.order {
		for _, b := range pl.queued[p] {
			note(b.lines[0])
		}
		if b := pl.open[p]; b != nil && len(b.lines) > 0 {
			note(b.lines[0])
		}
	}
	for _, r := range stash {
		note(r.line)
	}
	if failed != nil && first == 0 {
		var le lineError
		if errors.As(failed, &le) {
			first = le.line
		} else {
			first = pl.stats.read + 1
		}
	}
	pl.stats.firstUnacked = first
	return pl.stats, failed
}

// partitionOf chooses r's partition.
func (pl *pipeline) partitionOf(r inRec) int32 {
	switch {
	case r.part >= 0:
		return r.part
	case r.rec.Key != nil:
		return record.KeyPartition(r.rec.Key, pl.partitions)
	}
	return pl.sticky
}

func (pl *pipeline) size(r *record.Record) int {
	pl.scratch = record.Append(pl.scratch[:0], r)
	return len(pl.scratch)
}

// place adds r to its partition's open batch and reports whether it could.
func (pl *pipeline) place(r inRec) bool {
	n := pl.size(&r.rec)
	p := pl.partitionOf(r)
	if r.part < 0 && r.rec.Key == nil && !pl.fits(p, n) {
		// A full sticky partition: move on to one with room.
		for i := int32(1); i < pl.partitions; i++ {
			q := (p + i) % pl.partitions
			if pl.fits(q, n) {
				pl.sticky, p = q, q
				break
			}
		}
	}
	if !pl.fits(p, n) || pl.pending > 0 && pl.pending+n > pl.maxPending {
		return false
	}
	pl.pending += n
	pl.peak = max(pl.peak, pl.pending)
	b := pl.open[p]
	if b != nil && (b.bytes+n > pl.maxBytes || len(b.recs) >= pl.maxRecords) {
		pl.queued[p] = append(pl.queued[p], b)
		b = nil
	}
	if b == nil {
		b = &batch{p: p}
		pl.open[p] = b
		if len(pl.queued[p]) == 0 {
			pl.order = append(pl.order, p)
		}
	}
	b.recs = append(b.recs, r.rec)
	b.lines = append(b.lines, r.line)
	b.bytes += n
	return true
}

// fits reports whether a record of n bytes can join partition p now: in
// its open batch, or in a new one when at most one batch waits.
func (pl *pipeline) fits(p int32, n int) bool {
	b := pl.open[p]
	if b == nil || len(b.recs) == 0 {
		return len(pl.queued[p]) == 0
	}
	if b.bytes+n <= pl.maxBytes && len(b.recs) < pl.maxRecords {
		return true
	}
	return len(pl.queued[p]) == 0
}

// dispatch sends batches of partitions without a request in flight, up to
// the in-flight limit: sealed batches always, open ones when eager (the
// input has nothing more waiting) or full.
func (pl *pipeline) dispatch(ctx context.Context, results chan<- result, eager bool) {
	for i := 0; i < len(pl.order) && pl.sending < pl.inflight; i++ {
		p := pl.order[i]
		if pl.busy[p] {
			continue
		}
		var b *batch
		if q := pl.queued[p]; len(q) > 0 {
			b, pl.queued[p] = q[0], q[1:]
		} else if o := pl.open[p]; o != nil && eager {
			b = o
			delete(pl.open, p)
		}
		if b == nil {
			continue
		}
		if len(pl.queued[p]) == 0 && pl.open[p] == nil {
			pl.order = append(pl.order[:i], pl.order[i+1:]...)
			i--
		}
		if p == pl.sticky && b.recs != nil {
			pl.sticky = (p + 1) % pl.partitions
		}
		pl.pending -= b.bytes
		pl.busy[p] = true
		pl.sending++
		go func() {
			res, err := pl.send(ctx, b.p, b.recs)
			results <- result{b: b, res: res, err: err}
		}()
	}
}

// finish takes one answer. A batch the server found too large (413: nothing
// was written) is split in two and sent again, so produce works within a
// server's --max-batch-bytes whatever it is.
func (pl *pipeline) finish(r result) error {
	p := r.b.p
	pl.busy[p] = false
	pl.sending--
	if r.err != nil {
		if statusOf(r.err) == http.StatusRequestEntityTooLarge && len(r.b.recs) > 1 {
			h := len(r.b.recs) / 2
			a := &batch{p: p, recs: r.b.recs[:h], lines: r.b.lines[:h]}
			b := &batch{p: p, recs: r.b.recs[h:], lines: r.b.lines[h:]}
			for _, x := range []*batch{a, b} {
				for i := range x.recs {
					x.bytes += pl.size(&x.recs[i])
				}
			}
			pl.maxBytes = max(1, min(pl.maxBytes, a.bytes, b.bytes))
			pl.pending += a.bytes + b.bytes
			if len(pl.queued[p]) == 0 && pl.open[p] == nil {
				pl.order = append(pl.order, p)
			}
			pl.queued[p] = append([]*batch{a, b}, pl.queued[p]...)
			return nil
		}
		return fmt.Errorf("partition %d: %w", p, r.err)
	}
	pl.stats.records += int64(len(r.b.recs))
	pl.stats.bytes += int64(r.b.bytes)
	pl.stats.partitions[p] = true
	pl.stats.batches++
	if pl.onAck != nil {
		pl.onAck(r.b, r.res)
	}
	return nil
}

// lineError is an input error at a line.
type lineError struct {
	line int64
	err  error
}

func (e lineError) Error() string { return fmt.Sprintf("input line %d: %v", e.line, e.err) }
func (e lineError) Unwrap() error { return e.err }
