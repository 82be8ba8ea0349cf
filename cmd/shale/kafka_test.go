package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestKafka runs two `shale serve` processes on one bucket and drives
// them with stock Kafka clients: franz-go (produce through one node,
// consume through the other) and kcat (librdkafka): metadata, produce
// with keys and headers, consume by offset and by timestamp.
func TestKafka(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat not installed: run `make kcat` (apt-get install kcat)")
	}
	for _, newStore := range []func(*testing.T) storeEnv{fileStore, minioStore} {
		store := newStore(t)
		t.Run(store.name, func(t *testing.T) {
			a := startServer(t, store, t.TempDir(), nil, "--kafka-listen", "127.0.0.1:0")
			// Node b advertises a name rather than its listener's
			// address, as behind a load balancer.
			p := freePort(t)
			b := startServer(t, store, t.TempDir(), nil, "--kafka-listen", "127.0.0.1:"+p, "--kafka-advertise", "localhost:"+p)
			if a.kafka == "" || b.kafka == "" {
				t.Fatalf("kafka listeners not announced: %q %q", a.kafka, b.kafka)
			}
			testKafkaFranz(t, a.kafka, "localhost:"+p)
			testKafkaKcat(t, a.kafka, "localhost:"+p)
		})
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func kafkaClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func kafkaCreateTopic(t *testing.T, c *kgo.Client, topic string, partitions int32) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, partitions, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

func testKafkaFranz(t *testing.T, a, b string) {
	// franz-go's defaults: an idempotent producer, acks=all.
	prod := kafkaClient(t, kgo.SeedBrokers(a))
	meta, err := kmsg.NewPtrMetadataRequest().RequestWith(context.Background(), prod)
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, br := range meta.Brokers {
		hosts = append(hosts, fmt.Sprintf("%s:%d", br.Host, br.Port))
	}
	if len(hosts) != 2 || !strings.Contains(strings.Join(hosts, " "), a) || !strings.Contains(strings.Join(hosts, " "), b) {
		t.Fatalf("metadata brokers %v, want %s and %s", hosts, a, b)
	}
	kafkaCreateTopic(t, prod, "franz", 4)
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	var sent []*kgo.Record
	for i := range 400 {
		sent = append(sent, &kgo.Record{Topic: "franz", Key: []byte("k" + strconv.Itoa(i%10)), Value: []byte(strconv.Itoa(i)),
			Timestamp: base.Add(time.Duration(i) * time.Millisecond), Headers: []kgo.RecordHeader{{Key: "i", Value: []byte(strconv.Itoa(i))}}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := prod.ProduceSync(ctx, sent...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cons := kafkaClient(t, kgo.SeedBrokers(b), kgo.ConsumeTopics("franz"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	next := map[int32]int64{}
	for got := 0; got < len(sent); {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d", got, len(sent))
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			i, _ := strconv.Atoi(string(r.Value))
			w := sent[i]
			if r.Offset != next[r.Partition] || r.Partition != w.Partition || !bytes.Equal(r.Key, w.Key) || !r.Timestamp.Equal(w.Timestamp) || string(r.Headers[0].Value) != string(r.Value) {
				t.Fatalf("record %d at %d/%d (want offset %d): key %q ts %v", i, r.Partition, r.Offset, next[r.Partition], r.Key, r.Timestamp)
			}
			next[r.Partition]++
			got++
		})
	}
}

func kcat(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kcat", args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

func testKafkaKcat(t *testing.T, a, b string) {
	// Timestamps to look up: records produced first with known times.
	prod := kafkaClient(t, kgo.SeedBrokers(a), kgo.DisableIdempotentWrite(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	kafkaCreateTopic(t, prod, "kc", 2)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range 10 {
		r := &kgo.Record{Topic: "kc", Partition: 0, Value: []byte("t" + strconv.Itoa(i)), Timestamp: base.Add(time.Duration(i) * time.Second)}
		if err := prod.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	meta := kcat(t, "", "-L", "-b", a)
	if !strings.Contains(meta, "2 brokers:") || !strings.Contains(meta, `topic "kc" with 2 partitions`) || !strings.Contains(meta, b) {
		t.Fatalf("kcat -L:\n%s", meta)
	}

	kcat(t, "k1:v1\nk2:v2\n:v3\n", "-P", "-b", a, "-t", "kc", "-p", "0", "-K:", "-H", "h1=x", "-H", "h2=y", "-X", "enable.idempotence=true")
	out := kcat(t, "", "-C", "-b", b, "-t", "kc", "-p", "0", "-o", "10", "-e", "-q", "-f", `%o|%k|%s|%h\n`)
	want := "10|k1|v1|h1=x,h2=y\n11|k2|v2|h1=x,h2=y\n12||v3|h1=x,h2=y\n"
	if out != want {
		t.Fatalf("kcat consume from 10:\n%s\nwant:\n%s", out, want)
	}

	ts := base.Add(4 * time.Second).UnixMilli()
	out = kcat(t, "", "-C", "-b", b, "-t", "kc", "-p", "0", "-o", "s@"+strconv.FormatInt(ts, 10), "-c", "2", "-q", "-f", `%o|%s|%T\n`)
	want = fmt.Sprintf("4|t4|%d\n5|t5|%d\n", ts, ts+1000)
	if out != want {
		t.Fatalf("kcat consume from timestamp %d:\n%s\nwant:\n%s", ts, out, want)
	}
}

// TestKafkaIdempotentProducerSurvivesNodeKill: a franz-go idempotent
// producer (its defaults) writes to two nodes on one MinIO bucket; one node
// is SIGKILLed mid-run. Every record is in the log exactly once, at
// contiguous offsets, in the order the producer sent it per partition.
func TestKafkaIdempotentProducerSurvivesNodeKill(t *testing.T) {
	store := minioStore(t)
	a := startServer(t, store, t.TempDir(), nil, "--store-timeout", "5s")
	b := startServer(t, store, t.TempDir(), nil, "--store-timeout", "5s")
	prod := kafkaClient(t, kgo.SeedBrokers(a.kafka, b.kafka), kgo.RecordRetries(1000), kgo.RetryTimeout(2*time.Minute))
	kafkaCreateTopic(t, prod, "exactly", 4)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const n = 6000
	errs := make(chan error, n)
	for i := range n {
		if i == n/3 {
			a.kill() // mid-run: some batches are in flight to a
		}
		prod.Produce(ctx, &kgo.Record{Topic: "exactly", Key: []byte(strconv.Itoa(i % 16)), Value: []byte(strconv.Itoa(i))},
			func(_ *kgo.Record, err error) { errs <- err })
		if i%500 == 0 {
			time.Sleep(50 * time.Millisecond) // spread the run over several rolls
		}
	}
	for i := range n {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatalf("produce: %v", err)
			}
		case <-ctx.Done():
			t.Fatalf("%d of %d records acknowledged; node b: %s", i, n, b.stderr)
		}
	}

	cons := kafkaClient(t, kgo.SeedBrokers(b.kafka), kgo.ConsumeTopics("exactly"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := make([]int, n)
	next := map[int32]int64{}
	last := map[int32]int{} // per partition, the last value: the producer's order
	for got := 0; got < n; {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d", got, n)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			i, _ := strconv.Atoi(string(r.Value))
			if r.Offset != next[r.Partition] {
				t.Fatalf("partition %d: offset %d, want %d", r.Partition, r.Offset, next[r.Partition])
			}
			if l, ok := last[r.Partition]; ok && i <= l {
				t.Fatalf("partition %d: value %d after %d", r.Partition, i, l)
			}
			next[r.Partition]++
			last[r.Partition] = i
			seen[i]++
			got++
		})
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("record %d is in the log %d times", i, c)
		}
	}
	// Nothing past the n records (a duplicate would show up here).
	var total int64
	for _, o := range next {
		total += o
	}
	end := map[int32]int64{}
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = "exactly"
	for p := range int32(4) {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cons)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, p := range resp.Topics[0].Partitions {
		end[p.Partition] = p.Offset
		sum += p.Offset
	}
	if sum != n || total != n {
		t.Fatalf("end offsets %v (sum %d), consumed %d; want %d records", end, sum, total, n)
	}
}

// TestKafkaGroup: three franz-go members of one consumer group, spread
// over two nodes on one MinIO bucket, consume every record of a topic
// (range and cooperative-sticky assignors); their commits are durable:
// a new member of the group resumes at the end.
func TestKafkaGroup(t *testing.T) {
	store := minioStore(t)
	a := startServer(t, store, t.TempDir(), nil)
	b := startServer(t, store, t.TempDir(), nil)
	prod := kafkaClient(t, kgo.SeedBrokers(a.kafka, b.kafka))
	for _, tc := range []struct {
		name     string
		balancer kgo.GroupBalancer
	}{{"range", kgo.RangeBalancer()}, {"cooperative-sticky", kgo.CooperativeStickyBalancer()}} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "g-" + tc.name
			kafkaCreateTopic(t, prod, topic, 6)
			const n = 3000
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var recs []*kgo.Record
			for i := range n {
				recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i % 60)), Value: []byte(strconv.Itoa(i))})
			}
			if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			type rec struct {
				p   int32
				off int64
				v   int
			}
			got := make(chan rec, 4*n)
			for m := range 3 {
				seed := []string{a.kafka, b.kafka}[m%2]
				c := kafkaClient(t, kgo.SeedBrokers(seed), kgo.ConsumerGroup(topic), kgo.ConsumeTopics(topic),
					kgo.Balancers(tc.balancer), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AutoCommitInterval(200*time.Millisecond))
				go func() {
					for ctx.Err() == nil {
						fs := c.PollFetches(ctx)
						fs.EachRecord(func(r *kgo.Record) {
							v, _ := strconv.Atoi(string(r.Value))
							got <- rec{r.Partition, r.Offset, v}
						})
					}
				}()
			}
			seen := make([]bool, n)
			for left := n; left > 0; {
				select {
				case r := <-got:
					if !seen[r.v] {
						seen[r.v] = true
						left--
					}
				case <-ctx.Done():
					t.Fatalf("group consumed %d of %d records", n-left, n)
				}
			}
			// Committed offsets reach the end: a later member of the group
			// starts there and sees nothing old.
			adm := kafkaClient(t, kgo.SeedBrokers(b.kafka))
			deadline := time.Now().Add(30 * time.Second)
			for {
				req := kmsg.NewPtrOffsetFetchRequest()
				req.Group = topic
				resp, err := req.RequestWith(ctx, adm)
				if err != nil {
					t.Fatal(err)
				}
				var sum int64
				for _, rt := range resp.Topics {
					for _, rp := range rt.Partitions {
						sum += rp.Offset
					}
				}
				if sum == n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("committed offsets sum to %d, want %d", sum, n)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}
