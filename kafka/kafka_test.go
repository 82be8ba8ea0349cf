package kafka

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/fs"
	"github.com/shalelog/shale/tier/minio"
	"github.com/shalelog/shale/tier/tiertest"
)

// startNode runs a node over s with its Kafka front end on a free port.
func startNode(t testing.TB, s tier.Store, name string) (*shale.Node, *Server, string) {
	t.Helper()
	opts := shale.DefaultOptions()
	opts.Name = name
	opts.HotDir = t.TempDir()
	opts.RollAge = 20 * time.Millisecond
	opts.CacheBytes = 1 << 20
	n, err := shale.Start(context.Background(), s, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(n, Options{Heartbeat: 200 * time.Millisecond})
	addr, err := srv.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); n.Close() })
	return n, srv, addr
}

func fileStore(t testing.TB) tier.Store {
	t.Helper()
	s, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func minioStore(t testing.TB) tier.Store {
	t.Helper()
	ep := tiertest.StartMinIO(t)
	s, err := minio.Open(context.Background(), fmt.Sprintf("minio://%s:%s@%s/%s/kafka", ep.AccessKey, ep.SecretKey, ep.Addr, ep.Bucket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func createTopic(t *testing.T, c *kgo.Client, name string, partitions int32) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, 3
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// testRecords are n records over partitions with keys, headers and
// distinct timestamps in the past.
func testRecords(topic string, n int, partitions int32) []*kgo.Record {
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var out []*kgo.Record
	for i := range n {
		r := &kgo.Record{
			Topic:     topic,
			Partition: int32(i) % partitions,
			Key:       []byte("key-" + strconv.Itoa(i)),
			Value:     bytes.Repeat([]byte{byte(i)}, 10+i%50),
			Timestamp: base.Add(time.Duration(i) * time.Millisecond),
			Headers:   []kgo.RecordHeader{{Key: "i", Value: []byte(strconv.Itoa(i))}, {Key: "empty"}},
		}
		if i%7 == 0 {
			r.Key = nil
		}
		out = append(out, r)
	}
	return out
}

// produceAll produces recs and fails on any error.
func produceAll(t *testing.T, c *kgo.Client, recs []*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// consumeAll reads want records of topic from the start and checks them
// against sent: offsets contiguous from 0 in each partition, keys, values,
// headers and timestamps as produced.
func consumeAll(t *testing.T, seed, topic string, sent []*kgo.Record) {
	t.Helper()
	c := newClient(t, kgo.SeedBrokers(seed), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	next := map[int32]int64{}
	byKey := map[string]*kgo.Record{}
	for _, r := range sent {
		byKey[string(r.Headers[0].Value)] = r
	}
	got := 0
	for got < len(sent) {
		fs := c.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", got, len(sent), err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			got++
			if r.Offset != next[r.Partition] {
				t.Fatalf("partition %d: offset %d, want %d", r.Partition, r.Offset, next[r.Partition])
			}
			next[r.Partition]++
			want := byKey[string(r.Headers[0].Value)]
			if want == nil || want.Partition != r.Partition || !bytes.Equal(want.Key, r.Key) || (want.Key == nil) != (r.Key == nil) ||
				!bytes.Equal(want.Value, r.Value) || !want.Timestamp.Equal(r.Timestamp) || len(r.Headers) != 2 || r.Headers[1].Key != "empty" || len(r.Headers[1].Value) != 0 {
				t.Fatalf("record %s/%d@%d: got key %q ts %v headers %v, want %+v", r.Topic, r.Partition, r.Offset, r.Key, r.Timestamp, r.Headers, want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for name, store := range map[string]func(testing.TB) tier.Store{"file": fileStore, "minio": minioStore} {
		t.Run(name, func(t *testing.T) {
			_, _, addr := startNode(t, store(t), "node-a")
			for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
				topic := "rt-" + strconv.Itoa(int(codecType(codec)))
				// Default options: idempotent, acks=all. The node does
				// not serve InitProducerId, and franz-go then produces
				// without idempotence.
				p := newClient(t, kgo.SeedBrokers(addr), kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(5*time.Millisecond))
				createTopic(t, p, topic, 3)
				sent := testRecords(topic, 300, 3)
				produceAll(t, p, sent)
				consumeAll(t, addr, topic, sent)
			}
		})
	}
}

func codecType(c kgo.CompressionCodec) int {
	for i, x := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		if fmt.Sprint(x) == fmt.Sprint(c) {
			return i
		}
	}
	return -1
}

func metadataBrokers(t *testing.T, c *kgo.Client) map[int32]string {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	resp, err := req.RequestWith(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]string{}
	for _, b := range resp.Brokers {
		out[b.NodeID] = fmt.Sprintf("%s:%d", b.Host, b.Port)
	}
	return out
}

func TestTwoNodes(t *testing.T) {
	s := fileStore(t)
	_, _, a := startNode(t, s, "node-a")
	_, sb, b := startNode(t, s, "node-b")
	p := newClient(t, kgo.SeedBrokers(a), kgo.DisableIdempotentWrite())
	brokers := metadataBrokers(t, p)
	if len(brokers) != 2 || brokers[shale.MemberID("node-a")] != a || brokers[shale.MemberID("node-b")] != b {
		t.Fatalf("metadata brokers %v, want node-a at %s and node-b at %s", brokers, a, b)
	}
	createTopic(t, p, "two", 8)
	// Leadership is spread: both nodes lead some of 8 partitions.
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	topic := "two"
	rt.Topic = &topic
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[int32]int{}
	for _, p := range resp.Topics[0].Partitions {
		leaders[p.Leader]++
	}
	if len(leaders) != 2 {
		t.Errorf("leaders of 8 partitions: %v, want both nodes", leaders)
	}
	sent := testRecords("two", 200, 8)
	produceAll(t, p, sent)
	consumeAll(t, b, "two", sent)

	// A node that leaves is gone from Metadata.
	sb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := newClient(t, kgo.SeedBrokers(a))
		if bs := metadataBrokers(t, c); len(bs) == 1 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("brokers after node-b closed: %v", bs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
