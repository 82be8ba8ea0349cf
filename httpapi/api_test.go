package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/fs"
	"github.com/shalelog/shale/tier/manifest"
	"github.com/shalelog/shale/tier/minio"
	"github.com/shalelog/shale/tier/tiertest"
)

// startNode runs a node with its HTTP API on a free loopback port. set,
// if not nil, changes the test defaults.
func startNode(t *testing.T, s tier.Store, set func(*shale.Options)) (*shale.Node, *Client) {
	t.Helper()
	opts := shale.DefaultOptions()
	opts.HotDir = t.TempDir()
	opts.RollAge = 20 * time.Millisecond
	opts.CacheBytes = 1 << 20
	if set != nil {
		set(&opts)
	}
	n, err := shale.Start(context.Background(), s, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(n, DefaultLimits())
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); n.Close() })
	return n, NewClient(addr)
}

func fsStore(t *testing.T) (tier.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// sampleRecords covers what Kafka records can hold: null and empty keys and
// values, arbitrary bytes, headers with null values.
func sampleRecords(n int) []record.Record {
	out := make([]record.Record, n)
	for i := range out {
		r := record.Record{Timestamp: int64(1700000000000 + i), Key: []byte(fmt.Sprint("key-", i)), Value: []byte{0xff, 0x00, byte(i), '\n'}}
		switch i % 4 {
		case 1:
			r.Key = nil
		case 2:
			r.Key, r.Value = []byte{}, []byte{}
		case 3:
			r.Value = nil
			r.Headers = []record.Header{{Key: "a", Value: []byte("1")}, {Key: "b", Value: nil}, {Key: "c", Value: []byte{0xc3}}}
		}
		out[i] = r
	}
	return out
}

// readAll reads a partition from 0 to the end it has when the read starts,
// as a consumer does: a read may return less than its limits.
func readAll(t *testing.T, c *Client, topic string, p int32) ([]record.Record, int64) {
	t.Helper()
	var out []record.Record
	var end int64 = -1
	for off := int64(0); end < 0 || off < end; {
		res, err := c.Read(context.Background(), ReadRequest{Topic: topic, Partition: p, Offset: off, Max: 10000})
		if err != nil {
			t.Fatal(err)
		}
		recs, e := res.Records, res.End
		if end < 0 {
			end = e
		}
		if len(recs) == 0 {
			break
		}
		out = append(out, recs...)
		off = recs[len(recs)-1].Offset + 1
	}
	return out, end
}

func sameRecords(t *testing.T, got, want []record.Record, firstOffset int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		w := want[i]
		w.Offset = firstOffset + int64(i)
		if !reflect.DeepEqual(got[i], w) {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, got[i], w)
		}
	}
}

// TestProduceReadRoundTrip round-trips keys, binary values and headers
// through the HTTP API on the file store and on a real MinIO.
func TestProduceReadRoundTrip(t *testing.T) {
	local, _ := fsStore(t)
	ep := tiertest.StartMinIO(t)
	ms, err := minio.Open(context.Background(), fmt.Sprintf("minio://%s:%s@%s/%s/rt", ep.AccessKey, ep.SecretKey, ep.Addr, ep.Bucket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	for name, s := range map[string]tier.Store{"file": local, "minio": ms} {
		t.Run(name, func(t *testing.T) { testRoundTrip(t, s) })
	}
}

func testRoundTrip(t *testing.T, s tier.Store) {
	ctx := context.Background()
	_, c := startNode(t, s, nil)
	if _, err := c.CreateTopic(ctx, TopicRequest{Name: "rt", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	want := sampleRecords(40)
	res, err := c.Produce(ctx, "rt", 1, want)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Partition != 1 || res[0].FirstOffset != 0 || res[0].LastOffset != 39 {
		t.Fatalf("produce results %+v", res)
	}
	got, end := readAll(t, c, "rt", 1)
	if end != 40 {
		t.Fatalf("end %d, want 40", end)
	}
	sameRecords(t, got, want, 0)
	// From the middle, bounded by max.
	res1, err := c.Read(ctx, ReadRequest{Topic: "rt", Partition: 1, Offset: 7, Max: 5})
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, res1.Records, want[7:12], 7)
	// By time.
	ts := time.UnixMilli(want[20].Timestamp)
	res1, err = c.Read(ctx, ReadRequest{Topic: "rt", Partition: 1, Time: &ts, Max: 1})
	if err != nil || len(res1.Records) != 1 || res1.Records[0].Offset != 20 {
		t.Fatalf("read by time: %+v, %v; want offset 20", res1.Records, err)
	}
	// JSON form: binary values come back as base64 and decode to the same bytes.
	resp, err := http.Get(c.Base + "/v1/topics/rt/partitions/1/records?offset=0&max=4&format=json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"value_b64"`) || !strings.Contains(string(body), `"key":"key-0"`) {
		t.Fatalf("json read: %s", body)
	}
	d, err := c.Describe(ctx, "rt")
	if err != nil || d.Parts[1].End != 40 || d.Parts[0].End != 0 || d.Parts[1].Objects < 1 {
		t.Fatalf("describe: %+v %v", d, err)
	}
}

func TestKeyedProduceUsesKafkaPartitioner(t *testing.T) {
	ctx := context.Background()
	s, _ := fsStore(t)
	_, c := startNode(t, s, nil)
	if _, err := c.CreateTopic(ctx, TopicRequest{Name: "k", Partitions: 8}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Produce(ctx, "k", -1, []record.Record{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Value: []byte("2")}, {Key: []byte("a"), Value: []byte("3")}})
	if err != nil {
		t.Fatal(err)
	}
	parts := map[int32]int{}
	for _, r := range res {
		parts[r.Partition] += r.Records
	}
	pa, pb := record.KeyPartition([]byte("a"), 8), record.KeyPartition([]byte("b"), 8)
	want := map[int32]int{pa: 2}
	want[pb]++
	if !reflect.DeepEqual(parts, want) {
		t.Fatalf("records per partition %v, want %v", parts, want)
	}
}

// TestBadInput: every malformed request gets a clear error with the right
// status, and none of them disturbs what was already acknowledged.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	s, _ := fsStore(t)
	_, c := startNode(t, s, func(o *shale.Options) { o.MaxBatchBytes = 64 << 10 })
	c.HTTP.Timeout = 10 * time.Second
	if _, err := c.CreateTopic(ctx, TopicRequest{Name: "ok", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	acked := sampleRecords(10)
	if _, err := c.Produce(ctx, "ok", 0, acked); err != nil {
		t.Fatal(err)
	}
	post := func(path, ctype string, body []byte) (int, string) {
		resp, err := c.HTTP.Post(c.Base+path, ctype, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	get := func(path string) (int, string) {
		resp, err := c.HTTP.Get(c.Base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name   string
		do     func() (int, string)
		status int
		says   string
	}{
		{"malformed records", func() (int, string) { return post("/v1/topics/ok/records", RecordsType, []byte{0x02, 0x02, 0xff}) }, 400, "decode records"},
		{"malformed json records", func() (int, string) { return post("/v1/topics/ok/records", "application/json", []byte(`{"records":[`)) }, 400, "decode records"},
		{"both value forms", func() (int, string) {
			return post("/v1/topics/ok/records", "application/json", []byte(`{"records":[{"value":"a","value_b64":"YQ=="}]}`))
		}, 400, "both"},
		{"empty produce", func() (int, string) { return post("/v1/topics/ok/records", RecordsType, nil) }, 400, "no records"},
		{"oversize batch", func() (int, string) {
			return post("/v1/topics/ok/records?partition=0", RecordsType, record.Append(nil, &record.Record{Value: make([]byte, 100<<10)}))
		}, 413, "too large"},
		{"oversize body", func() (int, string) {
			return post("/v1/topics/ok/records", RecordsType, make([]byte, 17<<20))
		}, 413, "too large"},
		{"unknown topic produce", func() (int, string) {
			return post("/v1/topics/nope/records", RecordsType, record.Append(nil, &record.Record{Value: []byte("x")}))
		}, 404, "unknown topic"},
		{"unknown partition produce", func() (int, string) {
			return post("/v1/topics/ok/records?partition=5", RecordsType, record.Append(nil, &record.Record{Value: []byte("x")}))
		}, 404, "unknown partition"},
		{"bad partition param", func() (int, string) { return post("/v1/topics/ok/records?partition=x", RecordsType, []byte{0}) }, 400, "not a partition"},
		{"invalid topic name", func() (int, string) {
			return post("/v1/topics", "application/json", []byte(`{"name":"no spaces","partitions":1}`))
		}, 400, "invalid topic"},
		{"zero partitions", func() (int, string) {
			return post("/v1/topics", "application/json", []byte(`{"name":"z","partitions":0}`))
		}, 400, "partitions 0 is outside the valid range 1-100000"},
		{"unknown field", func() (int, string) {
			return post("/v1/topics", "application/json", []byte(`{"name":"z","partitions":1,"replication":3}`))
		}, 400, "unknown field"},
		{"duplicate topic", func() (int, string) {
			return post("/v1/topics", "application/json", []byte(`{"name":"ok","partitions":1}`))
		}, 409, "already exists"},
		{"unknown topic read", func() (int, string) { return get("/v1/topics/nope/partitions/0/records") }, 404, "unknown topic"},
		{"offset past end", func() (int, string) { return get("/v1/topics/ok/partitions/0/records?offset=11") }, 416, "out of range"},
		{"bad offset", func() (int, string) { return get("/v1/topics/ok/partitions/0/records?offset=-1") }, 400, "0 or more"},
		{"bad wait", func() (int, string) { return get("/v1/topics/ok/partitions/0/records?wait=soon") }, 400, "duration"},
		{"bad time", func() (int, string) { return get("/v1/topics/ok/partitions/0/records?time=yesterday") }, 400, "RFC 3339"},
		{"describe unknown", func() (int, string) { return get("/v1/topics/nope") }, 404, "unknown topic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := tc.do()
			if status != tc.status || !strings.Contains(body, tc.says) || !strings.Contains(body, `"error"`) {
				t.Fatalf("status %d body %s; want %d mentioning %q", status, body, tc.status, tc.says)
			}
		})
	}
	got, end := readAll(t, c, "ok", 0)
	if end != 10 {
		t.Fatalf("after bad input: end %d", end)
	}
	sameRecords(t, got, acked, 0)
}

// TestCorruptObjectIsReportedNotReturned flips a bit in, and truncates, the
// object holding acknowledged records: a node reading from the store must
// fail with an error naming the object, never return altered data.
func TestCorruptObjectIsReportedNotReturned(t *testing.T) {
	ctx := context.Background()
	for _, damage := range []string{"bit flip", "truncate"} {
		t.Run(damage, func(t *testing.T) {
			s, dir := fsStore(t)
			_, c := startNode(t, s, nil)
			if _, err := c.CreateTopic(ctx, TopicRequest{Name: "c", Partitions: 1}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Produce(ctx, "c", 0, sampleRecords(50)); err != nil {
				t.Fatal(err)
			}
			objs, err := s.List(ctx, "data/", "", 0)
			if err != nil || len(objs) != 1 {
				t.Fatalf("objects %v %v", objs, err)
			}
			path := filepath.Join(dir, objs[0].Key)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if damage == "bit flip" {
				data[len(data)/3] ^= 0x04
			} else {
				data = data[:len(data)/2]
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			// A second node has no hot copy and must read the object.
			_, other := startNode(t, s, nil)
			_, err = other.Read(ctx, ReadRequest{Topic: "c", Partition: 0, Max: 1000})
			var se *StatusError
			if !errors.As(err, &se) || se.Status != 500 || !strings.Contains(se.Message, objs[0].Key) {
				t.Fatalf("read of damaged object: %v; want a 500 naming %s", err, objs[0].Key)
			}
		})
	}
}

// TestTwoNodesOneBucket: producers write to two nodes on the same bucket
// and the same partitions at once. Every offset is assigned once, and both
// nodes return identical records for the whole range.
func TestTwoNodesOneBucket(t *testing.T) {
	ctx := context.Background()
	s, _ := fsStore(t)
	_, a := startNode(t, s, nil)
	_, b := startNode(t, s, nil)
	if _, err := a.CreateTopic(ctx, TopicRequest{Name: "two", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	type acked struct {
		p     int32
		first int64
		vals  []string
	}
	var mu sync.Mutex
	var acks []acked
	var wg sync.WaitGroup
	for i, c := range []*Client{a, b, a, b} {
		wg.Go(func() {
			for j := range 15 {
				p := int32(j % 2)
				var recs []record.Record
				var vals []string
				for k := range 3 {
					v := fmt.Sprintf("w%d-%d-%d", i, j, k)
					vals = append(vals, v)
					recs = append(recs, record.Record{Value: []byte(v)})
				}
				res, err := c.Produce(ctx, "two", p, recs)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acks = append(acks, acked{p, res[0].FirstOffset, vals})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	want := map[[2]int64]string{}
	for _, ack := range acks {
		for k, v := range ack.vals {
			key := [2]int64{int64(ack.p), ack.first + int64(k)}
			if prev, dup := want[key]; dup {
				t.Fatalf("offset %v assigned to %q and %q", key, prev, v)
			}
			want[key] = v
		}
	}
	for p := range int32(2) {
		var views [2][]record.Record
		for i, c := range []*Client{a, b} {
			// Describe brings the node up to date with the other's commits
			// (a read at an offset it has not seen does so too).
			if _, err := c.Describe(ctx, "two"); err != nil {
				t.Fatal(err)
			}
			recs, end := readAll(t, c, "two", p)
			n := int64(0)
			for k := range want {
				if k[0] == int64(p) {
					n++
				}
			}
			if end != n || int64(len(recs)) != n {
				t.Fatalf("node %d partition %d: end %d, %d records; want %d", i, p, end, len(recs), n)
			}
			for _, r := range recs {
				if want[[2]int64{int64(p), r.Offset}] != string(r.Value) {
					t.Fatalf("node %d partition %d offset %d: %q, acknowledged %q", i, p, r.Offset, r.Value, want[[2]int64{int64(p), r.Offset}])
				}
			}
			views[i] = recs
		}
		if !reflect.DeepEqual(views[0], views[1]) {
			t.Fatalf("partition %d: nodes disagree", p)
		}
	}
}

// TestLongPollSeesOtherNodesCommits: a read at the end waits, and returns
// as soon as another node commits.
func TestLongPollSeesOtherNodesCommits(t *testing.T) {
	ctx := context.Background()
	s, _ := fsStore(t)
	_, a := startNode(t, s, nil)
	_, b := startNode(t, s, nil)
	if _, err := a.CreateTopic(ctx, TopicRequest{Name: "lp", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Describe(ctx, "lp"); err != nil {
		t.Fatal(err)
	}
	got := make(chan []record.Record, 1)
	go func() {
		res, err := b.Read(ctx, ReadRequest{Topic: "lp", Partition: 0, Wait: 20 * time.Second})
		if err != nil {
			t.Error(err)
		}
		got <- res.Records
	}()
	time.Sleep(200 * time.Millisecond)
	if _, err := a.Produce(ctx, "lp", 0, []record.Record{{Value: []byte("hello")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case recs := <-got:
		if len(recs) != 1 || string(recs[0].Value) != "hello" {
			t.Fatalf("long poll returned %+v", recs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("long poll did not see the other node's commit")
	}
	// With nothing new, it returns empty at its deadline.
	res, err := b.Read(ctx, ReadRequest{Topic: "lp", Partition: 0, Offset: 1, Wait: 100 * time.Millisecond})
	if err != nil || len(res.Records) != 0 || res.End != 1 {
		t.Fatalf("idle long poll: %v %d %v", res.Records, res.End, err)
	}
}

func TestDeleteTopic(t *testing.T) {
	ctx := context.Background()
	s, _ := fsStore(t)
	_, c := startNode(t, s, nil)
	if _, err := c.CreateTopic(ctx, TopicRequest{Name: "d", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTopic(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	ts, err := c.Topics(ctx)
	if err != nil || len(ts) != 0 {
		t.Fatalf("topics after delete: %v %v", ts, err)
	}
	var se *StatusError
	if err := c.DeleteTopic(ctx, "d"); !errors.As(err, &se) || se.Status != 404 {
		t.Fatalf("second delete: %v", err)
	}
	_ = manifest.ErrUnknownTopic
}
