package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/record"
)

// heapPeak samples the heap in use (live and not yet collected objects)
// until stop is called, and returns the peak.
func heapPeak() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak }
}

// TestProduceMemoryBounded sends 16 concurrent produce requests of the
// largest size of tiny records, binary and JSON: bodies of the most records
// a request may hold (accepted), and 16 MiB bodies (refused for their
// record count, before they are decoded). The node's heap must stay under
// 512 MiB. Before produce was bounded, one 16 MiB binary body of tiny
// records decoded to more than 1 GB.
func TestProduceMemoryBounded(t *testing.T) {
	s, _ := fsStore(t)
	limits := DefaultLimits()
	_, c := startServer(t, s, nil, limits)
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, TopicRequest{Name: "m", Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	tiny := record.Append(nil, &record.Record{Value: []byte("x")})
	tinyJSON := []byte(`{"value":"x"},`)
	repeat := func(unit []byte, size int, prefix, suffix string) []byte {
		n := (size - len(prefix) - len(suffix)) / len(unit)
		b := append([]byte(prefix), bytes.Repeat(unit, n)...)
		if suffix != "" {
			b = append(b[:len(b)-1], suffix...) // drop the last comma
		}
		return b
	}
	const concurrent = 16
	for _, tc := range []struct {
		name   string
		ctype  string
		body   []byte
		status int
	}{
		{"binary most records", RecordsType, bytes.Repeat(tiny, limits.MaxRecords), 200},
		{"json most records", "application/json", repeat(tinyJSON, limits.MaxRecords*len(tinyJSON)+len(`{"records":[]}`), `{"records":[`, `]}`), 200},
		{"binary 16 MiB", RecordsType, repeat(tiny, int(limits.MaxBody), "", ""), 413},
		{"json 16 MiB", "application/json", repeat(tinyJSON, int(limits.MaxBody), `{"records":[`, `]}`), 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GC()
			stop := heapPeak()
			var wg sync.WaitGroup
			statuses := make([]int, concurrent)
			for i := range concurrent {
				wg.Go(func() {
					// One body shared by every request: the client side
					// holds it once.
					url := fmt.Sprintf("%s/v1/topics/m/records?partition=%d", c.Base, i%4)
					resp, err := http.Post(url, tc.ctype, bytes.NewReader(tc.body))
					if err != nil {
						t.Error(err)
						return
					}
					msg, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					statuses[i] = resp.StatusCode
					if resp.StatusCode != tc.status {
						t.Errorf("request %d: status %d (%s), want %d", i, resp.StatusCode, msg, tc.status)
					}
				})
			}
			wg.Wait()
			peak := stop()
			t.Logf("%d concurrent requests of %d bytes: peak heap in use %.1f MiB", concurrent, len(tc.body), float64(peak)/(1<<20))
			if peak >= 512<<20 {
				t.Fatalf("peak heap in use %.1f MiB, the bound is 512 MiB", float64(peak)/(1<<20))
			}
		})
	}
}

// TestIdleBodiesDoNotHoldBudget: twenty connections declare 16 MiB bodies
// and send nothing. They must not hold the in-flight budget: a normal
// produce succeeds at once, not after the body or store timeout (30 s).
func TestIdleBodiesDoNotHoldBudget(t *testing.T) {
	s, _ := fsStore(t)
	_, c := startServer(t, s, nil, DefaultLimits())
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, TopicRequest{Name: "idle", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(c.Base, "http://")
	for range 20 {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "POST /v1/topics/idle/records HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", host, RecordsType, 16<<20)
	}
	time.Sleep(200 * time.Millisecond) // let the server take the requests in
	// Well below the 30 s the idle requests could hold the budget for.
	quick := NewClient(host, WithTimeout(10*time.Second))
	if _, err := quick.Produce(ctx, "idle", 0, []record.Record{{Value: []byte("v")}}); err != nil {
		t.Fatalf("produce beside idle bodies: %v", err)
	}
}

// TestSlowBodyIsCutOff: a body that starts and then stalls holds its share
// of the budget only until BodyTimeout, and is answered 408.
func TestSlowBodyIsCutOff(t *testing.T) {
	s, _ := fsStore(t)
	limits := DefaultLimits()
	limits.BodyTimeout = 300 * time.Millisecond
	_, c := startServer(t, s, nil, limits)
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, TopicRequest{Name: "slow", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(c.Base, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/topics/slow/records HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: 1000\r\n\r\nab", host, RecordsType)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("stalled body: no answer: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled body: status %d, want 408", resp.StatusCode)
	}
	if _, err := c.Produce(ctx, "slow", 0, []record.Record{{Value: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
}

// TestProduceLimits: requests over a count limit are refused with 413
// before anything is appended.
func TestProduceLimits(t *testing.T) {
	s, _ := fsStore(t)
	limits := DefaultLimits()
	limits.MaxRecords = 10
	limits.MaxHeaders = 20
	limits.MaxPartitions = 3
	_, c := startServer(t, s, nil, limits)
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, TopicRequest{Name: "l", Partitions: 8}); err != nil {
		t.Fatal(err)
	}
	withHeaders := func(n, h int) []record.Record {
		recs := make([]record.Record, n)
		for i := range recs {
			recs[i].Value = []byte("v")
			for range h {
				recs[i].Headers = append(recs[i].Headers, record.Header{Key: "h"})
			}
		}
		return recs
	}
	jsonParts := func(parts ...int) string {
		var b strings.Builder
		b.WriteString(`{"records":[`)
		for i, p := range parts {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"value":"v","partition":%d}`, p)
		}
		b.WriteString("]}")
		return b.String()
	}
	for _, tc := range []struct {
		name string
		do   func() error
		says string
	}{
		{"records", func() error { _, err := c.Produce(ctx, "l", 0, withHeaders(11, 0)); return err }, "at most 10"},
		{"headers", func() error { _, err := c.Produce(ctx, "l", 0, withHeaders(5, 5)); return err }, "at most 20"},
		{"json records", func() error { return postJSON(c, "/v1/topics/l/records", jsonParts(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)) }, "at most 10"},
		{"partitions", func() error { return postJSON(c, "/v1/topics/l/records", jsonParts(0, 1, 2, 3)) }, "at most 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			var se *StatusError
			if !errors.As(err, &se) || se.Status != 413 || !strings.Contains(se.Message, tc.says) {
				t.Fatalf("got %v; want 413 saying %q", err, tc.says)
			}
		})
	}
	d, err := c.Describe(ctx, "l")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Parts {
		if p.End != 0 {
			t.Fatalf("partition %d has %d records after refused requests", p.Partition, p.End)
		}
	}
	// Within the limits all is well.
	if err := postJSON(c, "/v1/topics/l/records", jsonParts(0, 1, 2, 0)); err != nil {
		t.Fatal(err)
	}
}

// TestProduceStatusWhenEveryPartitionFails: a request whose every
// partition failed gets the failure's status, not 207; 207 is for a mix.
func TestProduceStatusWhenEveryPartitionFails(t *testing.T) {
	hs := newHangStore(nil)
	fs, _ := fsStore(t)
	hs.Store = fs
	_, c := startServer(t, hs, func(o *shale.Options) {
		o.MaxBatchBytes = 64 << 10
		o.StoreTimeout = time.Second
	}, DefaultLimits())
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, TopicRequest{Name: "f", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 100<<10)
	cases := []struct {
		name   string
		body   string
		down   bool
		status int
	}{
		{"all too large", fmt.Sprintf(`{"records":[{"value":%q,"partition":0},{"value":%q,"partition":1}]}`, big, big), false, 413},
		{"mixed", fmt.Sprintf(`{"records":[{"value":%q,"partition":0},{"value":"ok","partition":1}]}`, big), false, 207},
		{"all unavailable", `{"records":[{"value":"a","partition":0},{"value":"b","partition":1}]}`, true, 503},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hs.setDown(tc.down)
			defer hs.setDown(false)
			resp, err := http.Post(c.Base+"/v1/topics/f/records", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(msg), `"results"`) {
				t.Fatalf("status %d (%s), want %d with results", resp.StatusCode, msg, tc.status)
			}
		})
	}
}

// TestAppendsPerRequestBounded: with MaxAppends 1, a request for three
// partitions appends them one after another, each waiting for its own
// commit (unbounded, all three share one roll and one commit).
func TestAppendsPerRequestBounded(t *testing.T) {
	s, _ := fsStore(t)
	limits := DefaultLimits()
	limits.MaxAppends = 1
	n, c := startServer(t, s, nil, limits)
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, TopicRequest{Name: "a", Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	before := n.Log.Seq()
	if err := postJSON(c, "/v1/topics/a/records", `{"records":[{"value":"0","partition":0},{"value":"1","partition":1},{"value":"2","partition":2}]}`); err != nil {
		t.Fatal(err)
	}
	if commits := n.Log.Seq() - before; commits < 3 {
		t.Fatalf("%d commits for three partitions appended one at a time; want 3", commits)
	}
}
