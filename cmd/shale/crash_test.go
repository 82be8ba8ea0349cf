package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shalelog/shale/httpapi"
	"github.com/shalelog/shale/record"
)

// ack is one acknowledged produce: batch b of writer w, at offsets
// [first, first+len(values)) of partition p.
type ack struct {
	p      int32
	first  int64
	values []string
}

// writers produce batches of distinct values to the servers (round robin)
// until stop is closed or a produce fails on every server, and return what
// was acknowledged.
func writers(t *testing.T, urls []string, topic string, partitions, n, batch int, stop <-chan struct{}) []ack {
	var mu sync.Mutex
	var acks []ack
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			c := httpapi.NewClient(urls[w%len(urls)])
			c.HTTP.Timeout = 20 * time.Second
			for b := 0; ; b++ {
				select {
				case <-stop:
					return
				default:
				}
				p := int32((w + b) % partitions)
				recs := make([]record.Record, batch)
				vals := make([]string, batch)
				for i := range recs {
					vals[i] = fmt.Sprintf("w%d-b%d-r%d", w, b, i)
					recs[i] = record.Record{Key: []byte(fmt.Sprint("w", w)), Value: []byte(vals[i])}
				}
				res, err := c.Produce(context.Background(), topic, p, recs)
				if err != nil {
					if strings.Contains(err.Error(), "cannot reach") {
						return // the server is gone
					}
					continue // not acknowledged; try the next batch
				}
				mu.Lock()
				acks = append(acks, ack{p: res[0].Partition, first: res[0].FirstOffset, values: vals})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return acks
}

// readAll reads every record of every partition through the server.
func readAll(t *testing.T, url, topic string, partitions int) [][]record.Record {
	t.Helper()
	c := httpapi.NewClient(url)
	out := make([][]record.Record, partitions)
	for p := range partitions {
		d, err := c.Describe(context.Background(), topic)
		if err != nil {
			t.Fatal(err)
		}
		end := d.Parts[p].End
		for off := int64(0); off < end; {
			res, err := c.Read(context.Background(), httpapi.ReadRequest{Topic: topic, Partition: int32(p), Offset: off, Max: 10000, MaxBytes: 16 << 20})
			if err != nil {
				t.Fatalf("read %s/%d at %d: %v", topic, p, off, err)
			}
			recs := res.Records
			if len(recs) == 0 {
				t.Fatalf("read %s/%d at %d: nothing although the end is %d", topic, p, off, end)
			}
			out[p] = append(out[p], recs...)
			off = recs[len(recs)-1].Offset + 1
		}
	}
	return out
}

// verifyLog checks the log against the acknowledgements: offsets start at
// 0 and are contiguous, every acknowledged record is at its acknowledged
// offset, and every batch in the log, acknowledged or not, is whole and
// contiguous (never a partial batch).
func verifyLog(t *testing.T, log [][]record.Record, acks []ack, batch int) {
	t.Helper()
	for p, recs := range log {
		for i, r := range recs {
			if r.Offset != int64(i) {
				t.Fatalf("partition %d: record %d has offset %d", p, i, r.Offset)
			}
		}
		for i := 0; i < len(recs); {
			v := string(recs[i].Value)
			prefix, _, _ := strings.Cut(v, "-r")
			for j := range batch {
				if i+j >= len(recs) || string(recs[i+j].Value) != fmt.Sprintf("%s-r%d", prefix, j) {
					t.Fatalf("partition %d offset %d: batch %s is not whole and contiguous", p, i, prefix)
				}
			}
			i += batch
		}
	}
	for _, a := range acks {
		for i, v := range a.values {
			off := a.first + int64(i)
			if int(a.p) >= len(log) || off >= int64(len(log[a.p])) || string(log[a.p][off].Value) != v {
				t.Fatalf("acknowledged %q at %d/%d is missing or different", v, a.p, off)
			}
		}
	}
}

// TestCrashLosesNothingAcknowledged kills a server with SIGKILL while
// producers write to it, at each point of a roll and at a random moment,
// restarts it on the same hot directory, and checks that everything
// acknowledged is there, at its offset, with no partial batch.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	const partitions, batch = 3, 5
	for _, mk := range []func(*testing.T) storeEnv{fileStore, minioStore} {
		for _, stage := range []string{"before-put", "after-put", "after-commit", "random"} {
			se := mk(t)
			t.Run(se.name+"/"+stage, func(t *testing.T) {
				hot := t.TempDir()
				var env []string
				if stage != "random" {
					env = []string{"SHALE_CRASH_AT=" + stage + ":4"}
				}
				srv := startServer(t, se, hot, env)
				mustCLI(t, nil, "", "topic", "create", "crash", "--partitions", fmt.Sprint(partitions), "--server", srv.url)
				stop := make(chan struct{})
				done := make(chan []ack)
				go func() { done <- writers(t, []string{srv.url}, "crash", partitions, 6, batch, stop) }()
				if stage == "random" {
					// A random moment after the first commits, so that the
					// crash always has acknowledged batches to lose (a fixed
					// delay found none on a loaded machine).
					waitForRecords(t, srv.url, "crash", 3*batch)
					time.Sleep(time.Duration(rand.IntN(700)) * time.Millisecond)
					srv.kill()
				}
				select {
				case <-srv.exited:
				case <-time.After(60 * time.Second):
					t.Fatal("server did not crash at " + stage)
				}
				close(stop)
				acks := <-done
				if !strings.Contains(srv.cmd.ProcessState.String(), "killed") {
					t.Fatalf("server exited with %v, want killed", srv.cmd.ProcessState)
				}
				if len(acks) == 0 {
					t.Fatal("nothing was acknowledged before the crash")
				}
				// Restart on the same store and hot directory.
				srv = startServer(t, se, hot, nil)
				log := readAll(t, srv.url, "crash", partitions)
				verifyLog(t, log, acks, batch)
				// The log goes on where it was.
				more := writers(t, []string{srv.url}, "crash", partitions, 2, batch, closedAfter(300*time.Millisecond))
				log2 := readAll(t, srv.url, "crash", partitions)
				verifyLog(t, log2, append(acks, more...), batch)
				for p := range log {
					if !reflect.DeepEqual(log[p], log2[p][:len(log[p])]) {
						t.Fatalf("partition %d changed after restart", p)
					}
				}
				checkObjectsWithStockArrow(t, se.open(t)) // orphans of the crash included
				t.Logf("%d batches acknowledged before the crash, all present", len(acks))
			})
		}
	}
}

// waitForRecords waits until topic holds at least n committed records.
func waitForRecords(t *testing.T, url, topic string, n int64) {
	t.Helper()
	c := httpapi.NewClient(url)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		d, err := c.Describe(context.Background(), topic)
		var sum int64
		for _, p := range d.Parts {
			sum += p.End
		}
		if err == nil && sum >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s holds %d records after a minute (err %v), want %d", topic, sum, err, n)
		}
	}
}

func closedAfter(d time.Duration) <-chan struct{} {
	c := make(chan struct{})
	time.AfterFunc(d, func() { close(c) })
	return c
}

// TestTwoServersOneBucket: producers write to two server processes on one
// bucket, on the same partitions at once. Every offset is assigned once,
// every acknowledged record is readable from either server at its offset,
// and both servers return identical records.
func TestTwoServersOneBucket(t *testing.T) {
	const partitions, batch = 2, 4
	for _, mk := range []func(*testing.T) storeEnv{fileStore, minioStore} {
		se := mk(t)
		t.Run(se.name, func(t *testing.T) {
			a := startServer(t, se, t.TempDir(), nil)
			b := startServer(t, se, t.TempDir(), nil)
			mustCLI(t, nil, "", "topic", "create", "two", "--partitions", fmt.Sprint(partitions), "--server", a.url)
			acks := writers(t, []string{a.url, b.url}, "two", partitions, 8, batch, closedAfter(2*time.Second))
			seen := map[[2]int64]bool{}
			for _, ack := range acks {
				for i := range ack.values {
					k := [2]int64{int64(ack.p), ack.first + int64(i)}
					if seen[k] {
						t.Fatalf("offset %v acknowledged twice", k)
					}
					seen[k] = true
				}
			}
			la := readAll(t, a.url, "two", partitions)
			lb := readAll(t, b.url, "two", partitions)
			verifyLog(t, la, acks, batch)
			verifyLog(t, lb, acks, batch)
			if !reflect.DeepEqual(la, lb) {
				t.Fatal("the two servers return different records")
			}
			total := 0
			for _, l := range la {
				total += len(l)
			}
			if total != len(seen) {
				t.Fatalf("log holds %d records, %d were acknowledged and nothing failed", total, len(seen))
			}
			checkObjectsWithStockArrow(t, se.open(t))
			t.Logf("%d records from %d batches through two servers", total, len(acks))
		})
	}
}
