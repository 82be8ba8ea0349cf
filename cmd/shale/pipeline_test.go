package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shalelog/shale/httpapi"
	"github.com/shalelog/shale/record"
)

// fakeLog is a topic behind a sendFunc: it appends batches, checks the
// limits a server enforces, and records the concurrency it saw.
type fakeLog struct {
	mu          sync.Mutex
	parts       map[int32][]record.Record
	busy        map[int32]bool
	inflight    int
	maxInflight int
	maxBytes    int // 413 above this many encoded bytes
	requests    int
	failAfter   int // fail every request after this many (0: never)
	overlap     bool
}

func newFakeLog() *fakeLog {
	return &fakeLog{parts: map[int32][]record.Record{}, busy: map[int32]bool{}}
}

func (l *fakeLog) send(ctx context.Context, p int32, recs []record.Record) (httpapi.ProduceResult, error) {
	l.mu.Lock()
	l.requests++
	n := l.requests
	if l.busy[p] {
		l.overlap = true
	}
	l.busy[p] = true
	l.inflight++
	l.maxInflight = max(l.maxInflight, l.inflight)
	l.mu.Unlock()
	time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.busy[p] = false
	l.inflight--
	var body []byte
	for i := range recs {
		body = record.Append(body, &recs[i])
	}
	if l.maxBytes > 0 && len(body) > l.maxBytes {
		return httpapi.ProduceResult{}, &httpapi.StatusError{Status: http.StatusRequestEntityTooLarge, Message: "record batch too large"}
	}
	if l.failAfter > 0 && n > l.failAfter {
		return httpapi.ProduceResult{}, &httpapi.StatusError{Status: http.StatusServiceUnavailable, Message: "object store unavailable"}
	}
	first := int64(len(l.parts[p]))
	l.parts[p] = append(l.parts[p], recs...)
	return httpapi.ProduceResult{Partition: p, FirstOffset: first, LastOffset: first + int64(len(recs)) - 1, Records: len(recs)}, nil
}

// feed hands recs to a pipeline in chunks of random sizes.
func feed(recs []inRec) <-chan chunk {
	in := make(chan chunk)
	go func() {
		defer close(in)
		for len(recs) > 0 {
			n := min(len(recs), 1+rand.IntN(300))
			in <- chunk{recs: recs[:n], more: rand.IntN(2) == 0}
			recs = recs[n:]
		}
	}()
	return in
}

func keyed(n int) []inRec {
	recs := make([]inRec, n)
	for i := range recs {
		recs[i] = inRec{rec: record.Record{Key: []byte(fmt.Sprint("k", i%17)), Value: []byte(fmt.Sprint(i))}, line: int64(i + 1), part: -1}
	}
	return recs
}

// TestPipelineOrderAndConcurrency: with several requests in flight, each
// partition's records arrive in input order, no partition ever has two
// requests in flight, and partitions do run concurrently.
func TestPipelineOrderAndConcurrency(t *testing.T) {
	l := newFakeLog()
	var acked []*batch
	pl := &pipeline{send: l.send, partitions: 8, maxBytes: 1 << 20, maxRecords: 50, inflight: 4,
		onAck: func(b *batch, _ httpapi.ProduceResult) { acked = append(acked, b) }}
	st, err := pl.run(context.Background(), feed(keyed(20000)))
	if err != nil {
		t.Fatal(err)
	}
	if st.records != 20000 || st.firstUnacked != 0 {
		t.Fatalf("stats %+v", st)
	}
	if l.overlap {
		t.Fatal("two requests in flight to one partition: its records could be reordered")
	}
	if l.maxInflight < 2 || l.maxInflight > 4 {
		t.Fatalf("at most %d requests in flight, want 2 to 4", l.maxInflight)
	}
	total := 0
	for p, recs := range l.parts {
		prev := -1
		for _, r := range recs {
			var i int
			fmt.Sscan(string(r.Value), &i)
			if i <= prev {
				t.Fatalf("partition %d: record %d after %d", p, i, prev)
			}
			if record.KeyPartition(r.Key, 8) != p {
				t.Fatalf("key %s in partition %d", r.Key, p)
			}
			prev = i
		}
		total += len(recs)
	}
	for _, b := range acked {
		if len(b.recs) > 50 {
			t.Fatalf("batch of %d records, limit 50", len(b.recs))
		}
	}
	if total != 20000 {
		t.Fatalf("%d records stored", total)
	}
}

// TestPipelineBatchesByBytes: 1000 lines of 10 KB go in batches under the
// byte limit (the old produce batched 1000 lines whatever their size and
// got 413).
func TestPipelineBatchesByBytes(t *testing.T) {
	l := newFakeLog()
	l.maxBytes = 1 << 20
	value := bytes.Repeat([]byte("x"), 10_000)
	recs := make([]inRec, 1000)
	for i := range recs {
		recs[i] = inRec{rec: record.Record{Value: value}, line: int64(i + 1), part: 0}
	}
	pl := &pipeline{send: l.send, partitions: 1, maxBytes: 1 << 20, maxRecords: 100_000, inflight: 4}
	st, err := pl.run(context.Background(), feed(recs))
	if err != nil {
		t.Fatal(err)
	}
	if st.records != 1000 || len(l.parts[0]) != 1000 || st.batches < 10 {
		t.Fatalf("stats %+v, stored %d", st, len(l.parts[0]))
	}
}

// TestPipelineSplitsOn413: a server with a smaller batch limit than the
// client's gets smaller batches, in order, and nothing is lost.
func TestPipelineSplitsOn413(t *testing.T) {
	l := newFakeLog()
	l.maxBytes = 10_000
	recs := make([]inRec, 3000)
	for i := range recs {
		recs[i] = inRec{rec: record.Record{Value: []byte(fmt.Sprintf("%08d", i))}, line: int64(i + 1), part: 0}
	}
	pl := &pipeline{send: l.send, partitions: 1, maxBytes: 1 << 20, maxRecords: 100_000, inflight: 4}
	st, err := pl.run(context.Background(), feed(recs))
	if err != nil {
		t.Fatal(err)
	}
	if st.records != 3000 {
		t.Fatalf("stats %+v", st)
	}
	for i, r := range l.parts[0] {
		if string(r.Value) != fmt.Sprintf("%08d", i) {
			t.Fatalf("record %d is %s", i, r.Value)
		}
	}
}

// TestPipelineFailureSaysWhereToResume: after a failed request the
// pipeline stops, and reports the acknowledged count and the first line
// not acknowledged; every line before it was acknowledged.
func TestPipelineFailureSaysWhereToResume(t *testing.T) {
	l := newFakeLog()
	l.failAfter = 3
	recs := make([]inRec, 5000)
	for i := range recs {
		recs[i] = inRec{rec: record.Record{Value: []byte(fmt.Sprint(i + 1))}, line: int64(i + 1), part: 0}
	}
	pl := &pipeline{send: l.send, partitions: 1, maxBytes: 1 << 20, maxRecords: 100, inflight: 4}
	st, err := pl.run(context.Background(), feed(recs))
	if err == nil || !strings.Contains(err.Error(), "object store unavailable") {
		t.Fatalf("err %v", err)
	}
	stored := len(l.parts[0])
	if st.records != int64(stored) || st.records == 0 || st.firstUnacked != int64(stored)+1 {
		t.Fatalf("stats %+v with %d stored", st, stored)
	}
}

// TestPipelineInputError: records before a bad input line are sent; the
// bad line is the first not acknowledged.
func TestPipelineInputError(t *testing.T) {
	l := newFakeLog()
	in := make(chan chunk, 2)
	in <- chunk{recs: keyed(10), more: true}
	in <- chunk{recs: keyed(15)[10:], err: lineError{line: 16, err: errors.New("not a JSON record")}}
	close(in)
	pl := &pipeline{send: l.send, partitions: 3, maxBytes: 1 << 20, maxRecords: 100, inflight: 4}
	st, err := pl.run(context.Background(), in)
	if err == nil || !strings.Contains(err.Error(), "input line 16") || st.records != 15 || st.firstUnacked != 16 {
		t.Fatalf("stats %+v, err %v", st, err)
	}
}

// TestPipelineStickyPartitions: unkeyed records without a partition fill
// one partition's batch at a time and spread over the partitions.
func TestPipelineStickyPartitions(t *testing.T) {
	l := newFakeLog()
	recs := make([]inRec, 10000)
	for i := range recs {
		recs[i] = inRec{rec: record.Record{Value: []byte("v")}, line: int64(i + 1), part: -1}
	}
	pl := &pipeline{send: l.send, partitions: 4, maxBytes: 1 << 20, maxRecords: 100, inflight: 4}
	st, err := pl.run(context.Background(), feed(recs))
	if err != nil || st.records != 10000 || len(l.parts) < 2 {
		t.Fatalf("stats %+v, %d partitions used, err %v", st, len(l.parts), err)
	}
}

// TestPipelineBoundsPending: keyed input over many partitions does not
// grow an open batch in each without bound.
func TestPipelineBoundsPending(t *testing.T) {
	l := newFakeLog()
	recs := make([]inRec, 50000)
	for i := range recs {
		recs[i] = inRec{rec: record.Record{Key: []byte(fmt.Sprint("key-", i)), Value: bytes.Repeat([]byte("v"), 100)}, line: int64(i + 1), part: -1}
	}
	in := make(chan chunk)
	go func() {
		defer close(in)
		for len(recs) > 0 { // input always waiting: only the bounds send partial batches
			n := min(len(recs), 1000)
			in <- chunk{recs: recs[:n], more: true}
			recs = recs[n:]
		}
	}()
	pl := &pipeline{send: l.send, partitions: 1000, maxBytes: 64 << 10, maxRecords: 100_000, inflight: 4, maxPending: 256 << 10}
	st, err := pl.run(context.Background(), in)
	if err != nil || st.records != 50000 {
		t.Fatalf("stats %+v, err %v", st, err)
	}
	if pl.peak > 256<<10 {
		t.Fatalf("%d bytes pending at the peak, bound %d", pl.peak, 256<<10)
	}
}
