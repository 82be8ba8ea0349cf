package main

// More stock Kafka clients against `shale serve`: kcat (librdkafka) as a
// balanced group consumer, sarama and segmentio/kafka-go. Each runs
// against two nodes on one MinIO bucket, members bootstrapping from
// different nodes, so group requests cross nodes to the coordinator.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// seen collects consumed records by value, from several members.
type seen struct {
	mu     sync.Mutex
	by     map[string]map[string]int // member -> value -> times
	detail map[string]string         // value -> "partition|key|headers" as consumed
}

func newSeen() *seen {
	return &seen{by: map[string]map[string]int{}, detail: map[string]string{}}
}

func (s *seen) add(member, value, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by[member] == nil {
		s.by[member] = map[string]int{}
	}
	s.by[member][value]++
	s.detail[value] = detail
}

// count returns how many of values member has seen ("" for any member).
func (s *seen) count(member string, values []string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range values {
		for m, vs := range s.by {
			if (member == "" || m == member) && vs[v] > 0 {
				n++
				break
			}
		}
	}
	return n
}

func (s *seen) detailOf(value string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.detail[value]
}

// waitUntil polls cond until it holds or a minute passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitGroupStable waits until group is Stable with n members, each
// assigned something, as DescribeGroups (through franz-go) tells.
func waitGroupStable(t *testing.T, c *kgo.Client, group string, n int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("group %s stable with %d members", group, n), func() bool {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Groups = []string{group}
		resp, err := req.RequestWith(context.Background(), c)
		if err != nil || len(resp.Groups) != 1 || resp.Groups[0].ErrorCode != 0 {
			return false
		}
		g := resp.Groups[0]
		if g.State != "Stable" || len(g.Members) != n {
			return false
		}
		for _, m := range g.Members {
			var a kmsg.ConsumerMemberAssignment
			if a.ReadFrom(m.MemberAssignment) != nil || len(a.Topics) == 0 || len(a.Topics[0].Partitions) == 0 {
				return false
			}
		}
		return true
	})
}

// produceValues writes one record per value, round-robin over partitions,
// with franz-go, and returns the values.
func produceValues(t *testing.T, c *kgo.Client, topic string, partitions int32, prefix string, n int) []string {
	t.Helper()
	var recs []*kgo.Record
	var vals []string
	for i := range n {
		v := prefix + strconv.Itoa(i)
		vals = append(vals, v)
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i) % partitions, Value: []byte(v)})
	}
	if err := c.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return vals
}

// committed returns the group's committed offsets of topic's partitions.
func committed(t *testing.T, c *kgo.Client, group, topic string) map[int32]int64 {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	rt.Partitions = []int32{0, 1, 2, 3}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			out[p.Partition] = p.Offset
		}
	}
	return out
}

func TestKafkaClients(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat not installed: run `make kcat` (apt-get install kcat)")
	}
	store := minioStore(t)
	a := startServer(t, store, t.TempDir(), nil)
	b := startServer(t, store, t.TempDir(), nil)
	// librdkafka's default assignors (range, roundrobin) with a member
	// SIGKILLed; cooperative-sticky (incremental rebalances) with a member
	// leaving cleanly (kcat closes its consumer on SIGTERM: LeaveGroup).
	t.Run("kcat-group-range", func(t *testing.T) { testKcatGroup(t, a.kafka, b.kafka, "range,roundrobin", syscall.SIGKILL) })
	t.Run("kcat-group-cooperative", func(t *testing.T) {
		testKcatGroup(t, a.kafka, b.kafka, "cooperative-sticky", syscall.SIGTERM)
	})
	t.Run("kcat-static", func(t *testing.T) { testKcatStatic(t, a.kafka, b.kafka) })
	// sarama's oldest version with record headers, its default and its
	// newest (it clamps request versions to those ApiVersions lists).
	for _, v := range []sarama.KafkaVersion{sarama.V0_11_0_0, sarama.DefaultVersion, sarama.MaxVersion} {
		t.Run("sarama-"+v.String(), func(t *testing.T) { testSarama(t, a.kafka, b.kafka, v) })
	}
	t.Run("sarama-admin", func(t *testing.T) { testSaramaAdmin(t, a.kafka) })
	t.Run("kafka-go", func(t *testing.T) { testKafkaGo(t, a.kafka, b.kafka) })
	t.Run("kafka-go-acks0-time", func(t *testing.T) { testKafkaGoAcksNoneAndTime(t, a.kafka, b.kafka) })
}

// kcatMember is a `kcat -G` balanced consumer process.
type kcatMember struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startKcatMember(t *testing.T, s *seen, name, broker, group, topic, strategy string, extra ...string) *kcatMember {
	t.Helper()
	args := []string{"-b", broker, "-G", group, "-q", "-u", "-f", `%p|%k|%h|%s\n`,
		"-X", "partition.assignment.strategy=" + strategy,
		"-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500",
		"-X", "auto.commit.interval.ms=200"}
	cmd := exec.Command("kcat", append(append(args, extra...), topic)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedWriter{w: &strings.Builder{}}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &kcatMember{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			f := strings.SplitN(lines.Text(), "|", 4)
			if len(f) == 4 {
				s.add(name, f[3], strings.Join(f[:3], "|"))
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		<-m.done
		cmd.Wait()
		if t.Failed() {
			t.Logf("kcat %s stderr:\n%s", name, stderr)
		}
	})
	return m
}

// testKcatGroup: two `kcat -G` members (bootstrapping from different
// nodes) share a 4-partition topic; records produced by kcat itself with
// enable.idempotence, keys and headers are consumed with them; together
// the members consume every record; when one is SIGKILLed the other takes
// its partitions and consumes what follows.
func testKcatGroup(t *testing.T, a, b, strategy string, stop syscall.Signal) {
	admin := kafkaClient(t, kgo.SeedBrokers(a), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	name := strings.ReplaceAll(strategy, ",", "-")
	topic, group := "kg-"+name, "kgrp-"+name
	kafkaCreateTopic(t, admin, topic, 4)

	// Phase 1: kcat produces, idempotent, with keys and headers.
	var in strings.Builder
	var first []string
	for i := range 100 {
		v := "p" + strconv.Itoa(i)
		first = append(first, v)
		fmt.Fprintf(&in, "key%d:%s\n", i, v)
	}
	kcat(t, in.String(), "-P", "-b", a, "-t", topic, "-K:", "-H", "src=kcat", "-X", "enable.idempotence=true", "-X", "acks=all", "-z", "zstd")

	s := newSeen()
	m1 := startKcatMember(t, s, "m1", a, group, topic, strategy)
	waitUntil(t, "m1 consuming the first records", func() bool { return s.count("m1", first) == len(first) })
	for i, v := range first {
		if d := s.detailOf(v); !strings.Contains(d, "|key"+strconv.Itoa(i)+"|src=kcat") {
			t.Fatalf("record %s consumed as %q, want key key%d and header src=kcat", v, d, i)
		}
	}

	// Phase 2: a second member joins; the group rebalances over both.
	startKcatMember(t, s, "m2", b, group, topic, strategy)
	waitGroupStable(t, admin, group, 2)
	second := produceValues(t, admin, topic, 4, "q", 200)
	waitUntil(t, "both members consuming the second records", func() bool { return s.count("", second) == len(second) })
	if s.count("m1", second) == 0 || s.count("m2", second) == 0 {
		t.Fatalf("second records: m1 got %d, m2 got %d; want both some", s.count("m1", second), s.count("m2", second))
	}

	// Phase 3: m1 stops (killed: m2 takes every partition once m1's
	// session expires; terminated: at once).
	m1.cmd.Process.Signal(stop)
	<-m1.done
	m1.cmd.Wait()
	third := produceValues(t, admin, topic, 4, "r", 200)
	waitUntil(t, "m2 consuming every third record", func() bool { return s.count("m2", third) == len(third) })
}

// testKcatStatic: a static member (group.instance.id) is SIGKILLed after
// its commits reach the end and restarted with the same instance id
// through the other node: it resumes from the committed offsets, so it
// consumes what was produced meanwhile and nothing before.
func testKcatStatic(t *testing.T, a, b string) {
	admin := kafkaClient(t, kgo.SeedBrokers(a), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	kafkaCreateTopic(t, admin, "kst", 2)
	first := produceValues(t, admin, "kst", 2, "a", 100)
	s := newSeen()
	m1 := startKcatMember(t, s, "m1", a, "kstg", "kst", "range", "-X", "group.instance.id=i1")
	waitUntil(t, "m1 consuming the first records", func() bool { return s.count("m1", first) == len(first) })
	waitUntil(t, "m1's commits reaching the end", func() bool {
		c := committed(t, admin, "kstg", "kst")
		return c[0] == 50 && c[1] == 50
	})
	m1.cmd.Process.Signal(syscall.SIGKILL)
	<-m1.done
	m1.cmd.Wait()

	second := produceValues(t, admin, "kst", 2, "b", 100)
	startKcatMember(t, s, "m1again", b, "kstg", "kst", "range", "-X", "group.instance.id=i1")
	waitUntil(t, "the restarted member consuming the second records", func() bool { return s.count("m1again", second) == len(second) })
	if n := s.count("m1again", first); n != 0 {
		t.Fatalf("the restarted member consumed %d records committed before", n)
	}
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{"kstg"}
	resp, err := req.RequestWith(context.Background(), admin)
	if err != nil {
		t.Fatal(err)
	}
	if g := resp.Groups[0]; len(g.Members) != 1 || g.Members[0].InstanceID == nil || *g.Members[0].InstanceID != "i1" {
		t.Fatalf("group members %+v, want one with instance id i1", g.Members)
	}
}

// saramaHandler records what a sarama group member consumes and marks it
// for commit.
type saramaHandler struct {
	name string
	s    *seen
}

func (h *saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *saramaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		var hs []string
		for _, h := range m.Headers {
			hs = append(hs, string(h.Key)+"="+string(h.Value))
		}
		h.s.add(h.name, string(m.Value), fmt.Sprintf("%d|%d|%s|%s", m.Partition, m.Offset, m.Key, strings.Join(hs, ",")))
		sess.MarkMessage(m, "")
	}
	return nil
}

func saramaConfig(v sarama.KafkaVersion) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = v
	cfg.ClientID = "shale-test"
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Partitioner = sarama.NewHashPartitioner
	// A codec per version: zstd needs 2.1.
	cfg.Producer.Compression = map[sarama.KafkaVersion]sarama.CompressionCodec{
		sarama.V0_11_0_0: sarama.CompressionSnappy, sarama.DefaultVersion: sarama.CompressionZSTD}[v]
	if v == sarama.MaxVersion {
		cfg.Producer.Compression = sarama.CompressionGZIP
	}
	// An assignor per version: range is the default.
	switch v {
	case sarama.V0_11_0_0:
		cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRoundRobin()}
	case sarama.MaxVersion:
		cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	}
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	cfg.Consumer.Group.Heartbeat.Interval = 300 * time.Millisecond
	cfg.Consumer.Group.Session.Timeout = 6 * time.Second
	cfg.Metadata.RefreshFrequency = time.Second
	return cfg
}

// testSarama: a sarama SyncProducer (idempotent, acks=all) writes records
// with keys and headers; a two-member sarama consumer group (members
// bootstrapping from different nodes) consumes every record and commits.
func testSarama(t *testing.T, a, b string, v sarama.KafkaVersion) {
	topic, group := "sar-"+v.String(), "sgrp-"+v.String()
	admin := kafkaClient(t, kgo.SeedBrokers(a))
	kafkaCreateTopic(t, admin, topic, 4)

	s := newSeen()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var groups []sarama.ConsumerGroup
	for i, broker := range []string{a, b} {
		g, err := sarama.NewConsumerGroup([]string{broker}, group, saramaConfig(v))
		if err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g)
		h := &saramaHandler{name: "m" + strconv.Itoa(i), s: s}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := g.Consume(ctx, []string{topic}, h); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
					t.Logf("sarama member %d: %v", i, err)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
		go func() {
			for err := range g.Errors() {
				t.Logf("sarama member %d: %v", i, err)
			}
		}()
	}
	defer func() {
		cancel()
		for _, g := range groups {
			g.Close()
		}
		wg.Wait()
	}()
	waitGroupStable(t, admin, group, 2)

	prod, err := sarama.NewSyncProducer([]string{a}, saramaConfig(v))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	// 20 records one by one, 180 in one SendMessages call.
	var vals []string
	var msgs []*sarama.ProducerMessage
	for i := range 200 {
		v := "s" + strconv.Itoa(i)
		vals = append(vals, v)
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("k" + strconv.Itoa(i%7)), Value: sarama.StringEncoder(v),
			Headers: []sarama.RecordHeader{{Key: []byte("h"), Value: []byte(v)}}})
	}
	for _, m := range msgs[:20] {
		if _, _, err := prod.SendMessage(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := prod.SendMessages(msgs[20:]); err != nil {
		t.Fatal(err)
	}
	// Offsets are contiguous from 0 in each partition, in send order.
	next := map[int32]int64{}
	for i, m := range msgs {
		if m.Offset != next[m.Partition] {
			t.Fatalf("record %d at %d/%d, want offset %d", i, m.Partition, m.Offset, next[m.Partition])
		}
		next[m.Partition]++
	}
	waitUntil(t, "the group consuming every sarama record", func() bool { return s.count("", vals) == len(vals) })
	if s.count("m0", vals) == 0 || s.count("m1", vals) == 0 {
		t.Fatalf("m0 got %d, m1 got %d; want both some", s.count("m0", vals), s.count("m1", vals))
	}
	for i, v := range vals {
		if d := s.detailOf(v); !strings.HasSuffix(d, fmt.Sprintf("|k%d|h=%s", i%7, v)) {
			t.Fatalf("record %s consumed as %q", v, d)
		}
	}
	waitUntil(t, "sarama's commits reaching the end offsets", func() bool {
		c := committed(t, admin, group, topic)
		for p, end := range next {
			if c[p] != end {
				return false
			}
		}
		return true
	})
}

// testKafkaGo: a kafka-go Writer writes records with keys and headers; two
// kafka-go Readers with one GroupID (bootstrapping from different nodes)
// consume every record and commit.
func testKafkaGo(t *testing.T, a, b string) {
	admin := kafkaClient(t, kgo.SeedBrokers(a))
	kafkaCreateTopic(t, admin, "kgo", 4)

	s := newSeen()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var readers []*kafkago.Reader
	for i, broker := range []string{a, b} {
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{broker}, GroupID: "kggrp", Topic: "kgo",
			MaxWait: 500 * time.Millisecond, StartOffset: kafkago.FirstOffset, HeartbeatInterval: 300 * time.Millisecond,
			SessionTimeout: 6 * time.Second, RebalanceTimeout: 10 * time.Second, CommitInterval: 100 * time.Millisecond,
			ErrorLogger: kafkago.LoggerFunc(func(f string, args ...any) { t.Logf("kafka-go reader %d: "+f, append([]any{i}, args...)...) })})
		readers = append(readers, r)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				var hs []string
				for _, h := range m.Headers {
					hs = append(hs, h.Key+"="+string(h.Value))
				}
				s.add("m"+strconv.Itoa(i), string(m.Value), fmt.Sprintf("%d|%d|%s|%s", m.Partition, m.Offset, m.Key, strings.Join(hs, ",")))
			}
		}()
	}
	defer func() {
		cancel()
		wg.Wait()
		for _, r := range readers {
			r.Close()
		}
	}()
	waitGroupStable(t, admin, "kggrp", 2)

	w := &kafkago.Writer{Addr: kafkago.TCP(b), Topic: "kgo", Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll,
		BatchTimeout: 10 * time.Millisecond, Compression: kafkago.Lz4}
	defer w.Close()
	var vals []string
	var msgs []kafkago.Message
	for i := range 200 {
		v := "g" + strconv.Itoa(i)
		vals = append(vals, v)
		msgs = append(msgs, kafkago.Message{Key: []byte("k" + strconv.Itoa(i%7)), Value: []byte(v), Headers: []kafkago.Header{{Key: "h", Value: []byte(v)}}})
	}
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	if err := w.WriteMessages(wctx, msgs...); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the group consuming every kafka-go record", func() bool { return s.count("", vals) == len(vals) })
	if s.count("m0", vals) == 0 || s.count("m1", vals) == 0 {
		t.Fatalf("m0 got %d, m1 got %d; want both some", s.count("m0", vals), s.count("m1", vals))
	}
	for i, v := range vals {
		if d := s.detailOf(v); !strings.HasSuffix(d, fmt.Sprintf("|k%d|h=%s", i%7, v)) {
			t.Fatalf("record %s consumed as %q", v, d)
		}
	}
	// Offsets per partition are contiguous from 0 and fully committed.
	ends := map[int32]int64{}
	s.mu.Lock()
	for _, d := range s.detail {
		f := strings.Split(d, "|")
		p, _ := strconv.Atoi(f[0])
		o, _ := strconv.ParseInt(f[1], 10, 64)
		ends[int32(p)] = max(ends[int32(p)], o+1)
	}
	s.mu.Unlock()
	total := int64(0)
	for _, e := range ends {
		total += e
	}
	if total != int64(len(vals)) {
		t.Fatalf("offsets end at %v, %d records in all; want %d", ends, total, len(vals))
	}
	waitUntil(t, "kafka-go's commits reaching the end offsets", func() bool {
		c := committed(t, admin, "kggrp", "kgo")
		for p, end := range ends {
			if c[p] != end {
				return false
			}
		}
		return true
	})
}

// testKafkaGoAcksNoneAndTime: a kafka-go Writer with acks=0 (no answer
// comes back; the records still land), then a kafka-go partition Reader
// positioned by timestamp (ListOffsets v1) and a Conn reading the end
// offset.
func testKafkaGoAcksNoneAndTime(t *testing.T, a, b string) {
	admin := kafkaClient(t, kgo.SeedBrokers(a))
	kafkaCreateTopic(t, admin, "kgo0", 1)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	w := &kafkago.Writer{Addr: kafkago.TCP(a), Topic: "kgo0", RequiredAcks: kafkago.RequireNone, BatchTimeout: 10 * time.Millisecond}
	defer w.Close()
	var msgs []kafkago.Message
	for i := range 50 {
		msgs = append(msgs, kafkago.Message{Value: []byte("z" + strconv.Itoa(i)), Time: base.Add(time.Duration(i) * time.Second)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	conn, err := kafkago.DialLeader(ctx, "tcp", b, "kgo0", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitUntil(t, "the acks=0 records landing", func() bool {
		end, err := conn.ReadLastOffset()
		return err == nil && end == 50
	})

	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{b}, Topic: "kgo0", Partition: 0, MaxWait: 500 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffsetAt(ctx, base.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := 10; i < 13; i++ {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Offset != int64(i) || string(m.Value) != "z"+strconv.Itoa(i) || !m.Time.Equal(base.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("read %d %q %v, want offset %d at %v", m.Offset, m.Value, m.Time, i, base.Add(time.Duration(i)*time.Second))
		}
	}
}

// testSaramaAdmin: sarama's ClusterAdmin on what shale serves: topics
// (create, list with their configs, describe, delete), the cluster, and
// the consumer group testSarama left behind (list, describe, offsets,
// delete).
func testSaramaAdmin(t *testing.T, a string) {
	adm, err := sarama.NewClusterAdmin([]string{a}, saramaConfig(sarama.DefaultVersion))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ms := "3600000"
	if err := adm.CreateTopic("sadm", &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1, ConfigEntries: map[string]*string{"retention.ms": &ms}}, false); err != nil {
		t.Fatal(err)
	}
	topics, err := adm.ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := topics["sadm"]; !ok || d.NumPartitions != 3 || d.ConfigEntries["retention.ms"] == nil || *d.ConfigEntries["retention.ms"] != ms {
		t.Fatalf("ListTopics sadm: %+v", topics["sadm"])
	}
	md, err := adm.DescribeTopics([]string{"sadm"})
	if err != nil || len(md) != 1 || len(md[0].Partitions) != 3 || md[0].Err != sarama.ErrNoError {
		t.Fatalf("DescribeTopics: %v %+v", err, md)
	}
	brokers, _, err := adm.DescribeCluster()
	if err != nil || len(brokers) != 2 {
		t.Fatalf("DescribeCluster: %v, %d brokers", err, len(brokers))
	}

	group := "sgrp-" + sarama.DefaultVersion.String()
	groups, err := adm.ListConsumerGroups()
	if err != nil || groups[group] != "consumer" {
		t.Fatalf("ListConsumerGroups: %v %v", err, groups)
	}
	gd, err := adm.DescribeConsumerGroups([]string{group})
	if err != nil || len(gd) != 1 || gd[0].State != "Empty" {
		t.Fatalf("DescribeConsumerGroups: %v %+v", err, gd)
	}
	offs, err := adm.ListConsumerGroupOffsets(group, map[string][]int32{"sar-" + sarama.DefaultVersion.String(): {0, 1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, b := range offs.Blocks["sar-"+sarama.DefaultVersion.String()] {
		total += b.Offset
	}
	if total != 200 {
		t.Fatalf("committed offsets sum to %d, want 200", total)
	}
	if err := adm.DeleteConsumerGroup(group); err != nil {
		t.Fatal(err)
	}
	if err := adm.DeleteTopic("sadm"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "sadm gone", func() bool {
		topics, err := adm.ListTopics()
		_, ok := topics["sadm"]
		return err == nil && !ok
	})
}
