package kafka

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/httpapi"
	"github.com/shalelog/shale/record"
)

// produceTo produces n records to one partition and returns the first
// offset.
func produceTo(t *testing.T, seed, topic string, partition int32, n int) int64 {
	t.Helper()
	// A new client for each call: it reads the topic's partitions afresh.
	c := newClient(t, kgo.SeedBrokers(seed), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for range n {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: partition, Value: []byte("v")})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := c.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("produce to %s/%d: %v", topic, partition, err)
	}
	return res[0].Record.Offset
}

// fetchAt fetches one partition from offset: its error code, high
// watermark, log start offset and first record offset at or after offset
// (-1 for none).
func fetchAt(t *testing.T, c *kgo.Client, topic string, partition int32, offset int64) (code int16, hw, logStart, first int64) {
	t.Helper()
	f := kmsg.NewPtrFetchRequest()
	f.MaxBytes, f.MaxWaitMillis = 1<<20, 10
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = topic
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = partition, offset, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	f.Topics = append(f.Topics, ft)
	resp, err := f.RequestWith(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	p := resp.Topics[0].Partitions[0]
	first = -1
	for b := p.RecordBatches; len(b) > 0; {
		// Whole batches come back, as from Kafka: the client skips the
		// records before its offset.
		var batch kmsg.RecordBatch
		if err := batch.ReadFrom(b); err != nil {
			t.Fatal(err)
		}
		b = b[12+batch.Length:]
		if last := batch.FirstOffset + int64(batch.LastOffsetDelta); last >= offset {
			first = max(offset, batch.FirstOffset)
			break
		}
	}
	return p.ErrorCode, p.HighWatermark, p.LogStartOffset, first
}

func TestCreatePartitions(t *testing.T) {
	n, _, addr := startNode(t, fileStore(t), "grow")
	c := newClient(t, kgo.SeedBrokers(addr))
	ctx := context.Background()
	createTopic(t, c, "grow", 2)
	createTopic(t, c, "other", 1)
	produceTo(t, addr, "grow", 0, 3)
	produceTo(t, addr, "grow", 1, 2)

	grow := func(validate bool, counts ...any) map[string]int16 {
		t.Helper()
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.ValidateOnly, req.TimeoutMillis = validate, 10000
		for i := 0; i < len(counts); i += 2 {
			rt := kmsg.NewCreatePartitionsRequestTopic()
			rt.Topic, rt.Count = counts[i].(string), int32(counts[i+1].(int))
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int16{}
		for _, rt := range resp.Topics {
			out[rt.Topic] = rt.ErrorCode
		}
		return out
	}
	partitions := func(topic string) int32 {
		tp, err := n.Log.Topic(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		return tp.Partitions
	}
	if got := grow(true, "grow", 4); got["grow"] != 0 || partitions("grow") != 2 {
		t.Fatalf("validate only: %v, %d partitions", got, partitions("grow"))
	}
	got := grow(false, "other", 1, "nope", 3, "dup", 2, "dup", 3)
	want := map[string]int16{"other": kerr.InvalidPartitions.Code, "nope": kerr.UnknownTopicOrPartition.Code, "dup": kerr.InvalidRequest.Code}
	for topic, code := range want {
		if got[topic] != code {
			t.Errorf("%s: code %d, want %d", topic, got[topic], code)
		}
	}
	if got := grow(false, "grow", 4); got["grow"] != 0 || partitions("grow") != 4 {
		t.Fatalf("grow: %v, %d partitions", got, partitions("grow"))
	}
	if got := grow(false, "grow", 3); got["grow"] != kerr.InvalidPartitions.Code {
		t.Fatalf("shrink: %v", got)
	}

	// Metadata lists the new partitions; producing to one through Kafka
	// starts at offset 0, and the old ones keep their offsets.
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	name := "grow"
	mt.Topic = &name
	meta.Topics = append(meta.Topics, mt)
	mresp, err := meta.RequestWith(ctx, c)
	if err != nil || len(mresp.Topics[0].Partitions) != 4 {
		t.Fatalf("metadata: %v, %+v", err, mresp)
	}
	if off := produceTo(t, addr, "grow", 3, 2); off != 0 {
		t.Fatalf("first offset in a new partition: %d", off)
	}
	if off := produceTo(t, addr, "grow", 0, 1); off != 3 {
		t.Fatalf("next offset in an old partition: %d, want 3", off)
	}
	if code, hw, _, first := fetchAt(t, c, "grow", 3, 0); code != 0 || hw != 2 || first != 0 {
		t.Fatalf("fetch the new partition: code %d, high watermark %d, first %d", code, hw, first)
	}

	// The HTTP front end sees the grown topic too.
	hs := httptest.NewServer(httpapi.New(n, httpapi.DefaultLimits()).Handler())
	t.Cleanup(hs.Close)
	hc := httpapi.NewClient(hs.URL)
	if _, err := hc.Produce(ctx, "grow", 2, []record.Record{{Value: []byte("h")}}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[int32]int{2: 1, 3: 2} {
		rr, err := hc.Read(ctx, httpapi.ReadRequest{Topic: "grow", Partition: p, Offset: 0})
		if err != nil || len(rr.Records) != want {
			t.Fatalf("HTTP read of partition %d: %v, %d records, want %d", p, err, len(rr.Records), want)
		}
	}
}

func TestAlterConfigs(t *testing.T) {
	_, _, addr := startNode(t, fileStore(t), "configs")
	c := newClient(t, kgo.SeedBrokers(addr))
	ctx := context.Background()
	createTopic(t, c, "cfg", 1)
	str := func(s string) *string { return &s }

	describe := func() map[string]string {
		t.Helper()
		req := kmsg.NewPtrDescribeConfigsRequest()
		r := kmsg.NewDescribeConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, "cfg"
		req.Resources = append(req.Resources, r)
		resp, err := req.RequestWith(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, c := range resp.Resources[0].Configs {
			out[c.Name] = *c.Value
		}
		return out
	}
	alter := func(validate bool, topic string, configs ...string) int16 {
		t.Helper()
		req := kmsg.NewPtrAlterConfigsRequest()
		req.ValidateOnly = validate
		r := kmsg.NewAlterConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, topic
		for i := 0; i < len(configs); i += 2 {
			rc := kmsg.NewAlterConfigsRequestResourceConfig()
			rc.Name, rc.Value = configs[i], str(configs[i+1])
			r.Configs = append(r.Configs, rc)
		}
		req.Resources = append(req.Resources, r)
		resp, err := req.RequestWith(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Resources[0].ErrorCode
	}
	type op struct {
		name string
		op   kmsg.IncrementalAlterConfigOp
		v    string
	}
	incr := func(validate bool, topic string, ops ...op) int16 {
		t.Helper()
		req := kmsg.NewPtrIncrementalAlterConfigsRequest()
		req.ValidateOnly = validate
		r := kmsg.NewIncrementalAlterConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, topic
		for _, o := range ops {
			rc := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
			rc.Name, rc.Op, rc.Value = o.name, o.op, str(o.v)
			r.Configs = append(r.Configs, rc)
		}
		req.Resources = append(req.Resources, r)
		resp, err := req.RequestWith(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Resources[0].ErrorCode
	}
	check := func(what, ms, bytes string) {
		t.Helper()
		if got := describe(); got["retention.ms"] != ms || got["retention.bytes"] != bytes || got["cleanup.policy"] != "delete" {
			t.Fatalf("%s: %v, want retention.ms %s, retention.bytes %s", what, got, ms, bytes)
		}
	}

	for _, c := range []struct {
		name    string
		configs []string
		code    int16
	}{
		{"compact", []string{"cleanup.policy", "compact"}, kerr.InvalidConfig.Code},
		{"unknown", []string{"segment.bytes", "1"}, kerr.InvalidConfig.Code},
		{"zero", []string{"retention.ms", "0"}, kerr.InvalidConfig.Code},
		{"not a number", []string{"retention.bytes", "lots"}, kerr.InvalidConfig.Code},
		{"twice", []string{"retention.ms", "1", "retention.ms", "2"}, kerr.InvalidRequest.Code},
	} {
		if code := alter(false, "cfg", c.configs...); code != c.code {
			t.Errorf("alter %s: code %d, want %d", c.name, code, c.code)
		}
	}
	if code := alter(false, "nope", "retention.ms", "1000"); code != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("alter an unknown topic: code %d", code)
	}
	check("after refused changes", "-1", "-1")
	if code := alter(true, "cfg", "retention.ms", "1000"); code != 0 {
		t.Fatalf("validate only: code %d", code)
	}
	check("after validate only", "-1", "-1")
	if code := alter(false, "cfg", "retention.ms", "1000", "retention.bytes", "5000", "cleanup.policy", "delete"); code != 0 {
		t.Fatalf("alter: code %d", code)
	}
	check("after alter", "1000", "5000")
	// AlterConfigs replaces the whole set: retention.bytes goes back.
	if code := alter(false, "cfg", "retention.ms", "2000"); code != 0 {
		t.Fatalf("alter: code %d", code)
	}
	check("after a second alter", "2000", "-1")

	set, del := kmsg.IncrementalAlterConfigOpSet, kmsg.IncrementalAlterConfigOpDelete
	app := kmsg.IncrementalAlterConfigOpAppend
	if code := incr(false, "cfg", op{"retention.bytes", set, "7000"}); code != 0 {
		t.Fatalf("incremental set: code %d", code)
	}
	check("after incremental set", "2000", "7000")
	if code := incr(false, "cfg", op{"retention.ms", del, ""}, op{"cleanup.policy", app, "delete"}); code != 0 {
		t.Fatalf("incremental delete: code %d", code)
	}
	check("after incremental delete", "-1", "7000")
	if code := incr(true, "cfg", op{"retention.ms", set, "5"}); code != 0 {
		t.Fatalf("incremental validate only: code %d", code)
	}
	for _, o := range []op{{"cleanup.policy", set, "compact"}, {"cleanup.policy", app, "compact"}, {"retention.ms", app, "5"}, {"min.insync.replicas", set, "2"}} {
		if code := incr(false, "cfg", o, op{"retention.bytes", set, "1"}); code != kerr.InvalidConfig.Code {
			t.Errorf("incremental %v %s=%s: code %d, want INVALID_CONFIG", o.op, o.name, o.v, code)
		}
	}
	check("after refused incremental changes", "-1", "7000")
}

func TestDeleteRecords(t *testing.T) {
	n, _, addr := startNode(t, fileStore(t), "trim")
	c := newClient(t, kgo.SeedBrokers(addr))
	ctx := context.Background()
	createTopic(t, c, "trim", 2)
	produceTo(t, addr, "trim", 0, 5)
	produceTo(t, addr, "trim", 0, 5)

	deleteRecords := func(offsets ...int64) (codes []int16, lows []int64) {
		t.Helper()
		req := kmsg.NewPtrDeleteRecordsRequest()
		rt := kmsg.NewDeleteRecordsRequestTopic()
		rt.Topic = "trim"
		for i := 0; i < len(offsets); i += 2 {
			rp := kmsg.NewDeleteRecordsRequestTopicPartition()
			rp.Partition, rp.Offset = int32(offsets[i]), offsets[i+1]
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		// Straight to the node: kgo would refuse an unknown partition
		// before sending.
		kresp, err := c.Broker(int(shale.MemberID("trim"))).Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		resp := kresp.(*kmsg.DeleteRecordsResponse)
		for _, p := range resp.Topics[0].Partitions {
			codes, lows = append(codes, p.ErrorCode), append(lows, p.LowWatermark)
		}
		return codes, lows
	}
	listOffset := func(ts int64) int64 {
		t.Helper()
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "trim"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = ts
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].Offset
	}

	codes, lows := deleteRecords(0, 4, 1, 0, 5, 0)
	if codes[0] != 0 || lows[0] != 4 || codes[1] != 0 || lows[1] != 0 || codes[2] != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("delete records: codes %v, low watermarks %v", codes, lows)
	}
	if e := listOffset(-2); e != 4 {
		t.Fatalf("earliest offset %d, want 4", e)
	}
	if e := listOffset(0); e != 4 {
		t.Fatalf("offset for timestamp 0: %d, want the start 4", e)
	}
	if code, _, _, _ := fetchAt(t, c, "trim", 0, 2); code != kerr.OffsetOutOfRange.Code {
		t.Fatalf("fetch below the start: code %d, want OFFSET_OUT_OF_RANGE", code)
	}
	if code, hw, start, first := fetchAt(t, c, "trim", 0, 4); code != 0 || hw != 10 || start != 4 || first != 4 {
		t.Fatalf("fetch at the start: code %d, high watermark %d, log start %d, first %d", code, hw, start, first)
	}
	hs := httptest.NewServer(httpapi.New(n, httpapi.DefaultLimits()).Handler())
	t.Cleanup(hs.Close)
	var se *httpapi.StatusError
	if _, err := httpapi.NewClient(hs.URL).Read(ctx, httpapi.ReadRequest{Topic: "trim", Offset: 3}); !errors.As(err, &se) || se.Status != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("HTTP read below the start: %v, want 416", err)
	}
	// Never backwards; never past the end; -1 is the high watermark.
	if codes, lows := deleteRecords(0, 2); codes[0] != 0 || lows[0] != 4 {
		t.Fatalf("delete records backwards: code %d, low watermark %d; want 0, 4", codes[0], lows[0])
	}
	if codes, _ := deleteRecords(0, 11); codes[0] != kerr.OffsetOutOfRange.Code {
		t.Fatalf("delete records past the end: code %d", codes[0])
	}
	if codes, lows := deleteRecords(0, -1); codes[0] != 0 || lows[0] != 10 {
		t.Fatalf("delete records to the high watermark: code %d, low watermark %d", codes[0], lows[0])
	}
	if e := listOffset(-2); e != 10 {
		t.Fatalf("earliest offset %d, want 10", e)
	}
	if off := produceTo(t, addr, "trim", 0, 1); off != 10 {
		t.Fatalf("produce after trimming everything: offset %d, want 10", off)
	}
}

// TestCreatePartitionsTwoNodes: a topic grown through one node is served
// grown by the other, which had seen the topic before: producing to a
// new partition through it and reading back work.
func TestCreatePartitionsTwoNodes(t *testing.T) {
	s := fileStore(t)
	_, _, a := startNode(t, s, "a")
	nb, _, b := startNode(t, s, "b")
	ca := newClient(t, kgo.SeedBrokers(a))
	createTopic(t, ca, "grow2", 1)
	produceTo(t, b, "grow2", 0, 1) // b knows the topic with 1 partition
	req := kmsg.NewPtrCreatePartitionsRequest()
	rt := kmsg.NewCreatePartitionsRequestTopic()
	rt.Topic, rt.Count = "grow2", 3
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), ca)
	if err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("grow: %v %+v", err, resp)
	}
	// b saw the topic with one partition; asked for a new one, it looks
	// at the log again (manifest.Log.TopicPartition, which front ends
	// use to check partitions).
	ctx := context.Background()
	if tp, err := nb.Log.TopicPartition(ctx, "grow2", 2); err != nil || tp.Partitions != 3 {
		t.Fatalf("b asked for partition 2: %+v, %v", tp, err)
	}
	if off, err := nb.Ingest.Append(ctx, "grow2", 2, []record.Record{{Value: []byte("b")}}); err != nil || off != 0 {
		t.Fatalf("append to partition 2 on b: %d, %v", off, err)
	}
	if res, err := nb.Reader.Read(ctx, "grow2", 2, 0, 10, 1<<20, 0); err != nil || len(res.Records) != 1 {
		t.Fatalf("read partition 2 on b: %v, %+v", err, res)
	}
	cb := newClient(t, kgo.SeedBrokers(b))
	for p := int32(0); p < 3; p++ {
		want := int64(0)
		if p != 1 {
			want = 1
		}
		if off := produceTo(t, b, "grow2", p, 1); off != want {
			t.Fatalf("produce to partition %d through b: offset %d, want %d", p, off, want)
		}
		// The fetch may go to the node that did not take the produce and
		// has not looked since: its high watermark may lag by the record.
		if code, hw, _, _ := fetchAt(t, cb, "grow2", p, 0); code != 0 || hw < want {
			t.Fatalf("fetch partition %d through b: code %d, high watermark %d", p, code, hw)
		}
	}
}

// TestAdminEdgeValues: extreme and missing values get error codes, never
// a panic or a closed connection.
func TestAdminEdgeValues(t *testing.T) {
	_, _, addr := startNode(t, fileStore(t), "edge")
	c := newClient(t, kgo.SeedBrokers(addr))
	ctx := context.Background()
	createTopic(t, c, "edge", 1)
	broker := c.Broker(int(shale.MemberID("edge")))

	cp := kmsg.NewPtrCreatePartitionsRequest()
	for _, n := range []int32{-5, 0, 1 << 30, 100001} {
		rt := kmsg.NewCreatePartitionsRequestTopic()
		rt.Topic, rt.Count = "edge", n
		cp.Topics = append(cp.Topics, rt)
		resp, err := broker.Request(ctx, cp)
		if err != nil {
			t.Fatal(err)
		}
		if code := resp.(*kmsg.CreatePartitionsResponse).Topics[0].ErrorCode; code != kerr.InvalidPartitions.Code {
			t.Errorf("count %d: code %d, want INVALID_PARTITIONS", n, code)
		}
		cp.Topics = nil
	}

	ac := kmsg.NewPtrAlterConfigsRequest()
	for _, typ := range []kmsg.ConfigResourceType{kmsg.ConfigResourceTypeTopic, kmsg.ConfigResourceTypeBroker, 99} {
		r := kmsg.NewAlterConfigsRequestResource()
		r.ResourceType, r.ResourceName = typ, "edge"
		r.Configs = append(r.Configs, kmsg.NewAlterConfigsRequestResourceConfig()) // no name, nil value
		r.Configs[0].Name = "retention.ms"
		ac.Resources = append(ac.Resources, r)
	}
	resp, err := broker.Request(ctx, ac)
	if err != nil {
		t.Fatal(err)
	}
	want := []int16{kerr.InvalidConfig.Code, kerr.InvalidConfig.Code, kerr.InvalidRequest.Code}
	for i, r := range resp.(*kmsg.AlterConfigsResponse).Resources {
		if r.ErrorCode != want[i] {
			t.Errorf("alter resource type %d with a nil value: code %d, want %d", r.ResourceType, r.ErrorCode, want[i])
		}
	}

	dr := kmsg.NewPtrDeleteRecordsRequest()
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = "edge"
	for _, off := range []int64{-2, -1 << 63, 1<<63 - 1} {
		rp := kmsg.NewDeleteRecordsRequestTopicPartition()
		rp.Offset = off
		rt.Partitions = append(rt.Partitions, rp)
	}
	dr.Topics = append(dr.Topics, rt)
	dresp, err := broker.Request(ctx, dr)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range dresp.(*kmsg.DeleteRecordsResponse).Topics[0].Partitions {
		if p.ErrorCode != kerr.OffsetOutOfRange.Code || p.LowWatermark != -1 {
			t.Errorf("delete records to %d: code %d, low watermark %d", rt.Partitions[i].Offset, p.ErrorCode, p.LowWatermark)
		}
	}
}
