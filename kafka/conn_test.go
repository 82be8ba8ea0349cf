package kafka

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/record"
)

// frame encodes req as a request frame with correlation id corr.
func frame(req kmsg.Request, corr int32) []byte {
	b := []byte{0, 0, 0, 0}
	b = kbin.AppendInt16(b, req.Key())
	b = kbin.AppendInt16(b, req.GetVersion())
	b = kbin.AppendInt32(b, corr)
	b = kbin.AppendNullableString(b, nil)
	if req.IsFlexible() {
		b = append(b, 0)
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// rawConn is a client connection that speaks frames directly.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) send(b []byte) {
	rc.t.Helper()
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatal(err)
	}
}

// recv reads one response frame into resp (whose version is set), and
// returns its correlation id.
func (rc *rawConn) recv(resp kmsg.Response) (int32, error) {
	rc.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(rc.br, size[:]); err != nil {
		return 0, err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(rc.br, body); err != nil {
		return 0, err
	}
	corr := int32(binary.BigEndian.Uint32(body))
	body = body[4:]
	if resp.IsFlexible() && resp.Key() != 18 {
		body = body[1:]
	}
	return corr, resp.ReadFrom(body)
}

// closed reports whether the server closed the connection.
func (rc *rawConn) closed() bool {
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := rc.br.ReadByte()
	return errors.Is(err, io.EOF)
}

// apiVersions checks that the connection still answers.
func (rc *rawConn) apiVersions(corr int32) {
	rc.t.Helper()
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "test", "1"
	rc.send(frame(req, corr))
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 3
	got, err := rc.recv(resp)
	if err != nil || got != corr || resp.ErrorCode != 0 || len(resp.ApiKeys) != len(apis) {
		rc.t.Fatalf("ApiVersions: corr %d (want %d), err %v, code %d, %d keys", got, corr, err, resp.ErrorCode, len(resp.ApiKeys))
	}
}

func TestApiVersionsTooNew(t *testing.T) {
	_, _, addr := startNode(t, fileStore(t), "n")
	rc := dial(t, addr)
	b := []byte{0, 0, 0, 0}
	b = kbin.AppendInt16(b, 18)
	b = kbin.AppendInt16(b, 99)
	b = kbin.AppendInt32(b, 7)
	b = kbin.AppendNullableString(b, nil)
	b = append(b, 0xde, 0xad) // a body of a layout we do not know
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	rc.send(b)
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	corr, err := rc.recv(resp)
	if err != nil || corr != 7 || resp.ErrorCode != kerr.UnsupportedVersion.Code || len(resp.ApiKeys) != 1 || resp.ApiKeys[0].ApiKey != 18 || resp.ApiKeys[0].MaxVersion != 3 {
		t.Fatalf("got corr %d err %v resp %+v", corr, err, resp)
	}
	rc.apiVersions(8) // the connection stays usable
}

func TestBadRequestsCloseOnlyTheirConnection(t *testing.T) {
	_, _, addr := startNode(t, fileStore(t), "n")
	other := dial(t, addr)
	other.apiVersions(1)
	header := func(key, version int16) []byte {
		b := []byte{0, 0, 0, 0}
		b = kbin.AppendInt16(b, key)
		b = kbin.AppendInt16(b, version)
		b = kbin.AppendInt32(b, 1)
		b = kbin.AppendNullableString(b, nil)
		binary.BigEndian.PutUint32(b, uint32(len(b)-4))
		return b
	}
	metadata := kmsg.NewPtrMetadataRequest()
	metadata.Version = 12
	good := frame(metadata, 1)
	for name, b := range map[string][]byte{
		"unknown key":         header(999, 0),
		"unserved key":        header(22, 4), // InitProducerId: known to kmsg, not served
		"unserved version":    header(0, 2),  // Produce v2: magic 0/1 message sets
		"size too large":      {0x7f, 0xff, 0xff, 0xff},
		"negative size":       {0xff, 0xff, 0xff, 0xff},
		"size below a header": {0, 0, 0, 3, 0, 1, 2},
		"truncated body":      good[:len(good)-1],
		"bad body":            append(header(3, 12), 0xff, 0xff, 0xff),
	} {
		t.Run(name, func(t *testing.T) {
			rc := dial(t, addr)
			rc.send(b)
			if name == "truncated body" {
				// The frame's size says more is coming: the server
				// waits for it, and ends when the client does.
				rc.c.(*net.TCPConn).CloseWrite()
			}
			if !rc.closed() {
				t.Fatal("connection not closed")
			}
			other.apiVersions(2)
		})
	}
}

// produceFrame is a Produce v9 request for one record batch.
func produceFrame(topic string, partition int32, acks int16, corr int32, recs []record.Record) []byte {
	return produceBatchFrame(topic, partition, acks, corr, appendBatch(nil, recs))
}

func produceBatchFrame(topic string, partition int32, acks int16, corr int32, batch []byte) []byte {
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, acks, 30000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return frame(req, corr)
}

// TestPipelinedProducesKeepOrder sends many produce requests for one
// partition on one connection without waiting, as librdkafka does, and
// expects answers in request order with offsets in that order.
func TestPipelinedProducesKeepOrder(t *testing.T) {
	_, _, addr := startNode(t, fileStore(t), "n")
	c := newClient(t, kgo.SeedBrokers(addr))
	createTopic(t, c, "order", 2)
	rc := dial(t, addr)
	const n = 40
	for i := range n {
		acks := int16(-1)
		if i == n-2 {
			acks = 0 // no answer: the next answer is the next request's
		}
		rc.send(produceFrame("order", int32(i%2), acks, int32(i), []record.Record{{Timestamp: int64(1000 + i), Value: []byte{byte(i)}}, {Timestamp: int64(1000 + i), Value: []byte{byte(i)}}}))
	}
	last := map[int32]int64{0: -2, 1: -2}
	for i := range n {
		if i == n-2 {
			continue
		}
		resp := kmsg.NewPtrProduceResponse()
		resp.Version = 9
		corr, err := rc.recv(resp)
		if err != nil {
			t.Fatal(err)
		}
		if corr != int32(i) {
			t.Fatalf("answer %d has correlation id %d", i, corr)
		}
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.BaseOffset != last[p.Partition]+2 && last[p.Partition] != -2 {
			t.Fatalf("request %d: partition %d base %d code %d after %d", i, p.Partition, p.BaseOffset, p.ErrorCode, last[p.Partition])
		}
		last[p.Partition] = p.BaseOffset
	}
	// The fetched values are in send order.
	var recs []record.Record
	for corr := int32(100); len(recs) < n; corr++ {
		f := kmsg.NewPtrFetchRequest()
		f.Version, f.MaxBytes = 12, 1<<20
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = "order"
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.PartitionMaxBytes, fp.FetchOffset = 1<<20, int64(len(recs))
		ft.Partitions = append(ft.Partitions, fp)
		f.Topics = append(f.Topics, ft)
		rc.send(frame(f, corr))
		resp := kmsg.NewPtrFetchResponse()
		resp.Version = 12
		if _, err := rc.recv(resp); err != nil {
			t.Fatal(err)
		}
		p := resp.Topics[0].Partitions[0]
		got, _, err := decodeBatches(p.RecordBatches)
		if err != nil || p.HighWatermark != n {
			t.Fatalf("fetch from %d: %v, high watermark %d", len(recs), err, p.HighWatermark)
		}
		recs = append(recs, got...)
	}
	for i, r := range recs {
		if want := byte(i / 2 * 2); r.Value[0] != want || r.Timestamp != int64(1000+int(want)) {
			t.Fatalf("record %d: value %d ts %d, want %d", i, r.Value[0], r.Timestamp, want)
		}
	}
}

func TestListOffsetsByTime(t *testing.T) {
	_, _, addr := startNode(t, fileStore(t), "n")
	c := newClient(t, kgo.SeedBrokers(addr))
	createTopic(t, c, "times", 1)
	sent := testRecords("times", 50, 1)
	produceAll(t, c, sent)
	list := func(ts int64) (int64, int64, int16) {
		req := kmsg.NewPtrListOffsetsRequest()
		req.ReplicaID = -1
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "times"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = ts
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.Topics[0].Partitions[0]
		return p.Offset, p.Timestamp, p.ErrorCode
	}
	if off, _, code := list(-2); off != 0 || code != 0 {
		t.Errorf("earliest: %d code %d", off, code)
	}
	if off, _, code := list(-1); off != 50 || code != 0 {
		t.Errorf("latest: %d code %d", off, code)
	}
	if off, ts, _ := list(sent[20].Timestamp.UnixMilli()); off != 20 || ts != sent[20].Timestamp.UnixMilli() {
		t.Errorf("by time: offset %d ts %d, want 20 and %d", off, ts, sent[20].Timestamp.UnixMilli())
	}
	if off, _, _ := list(time.Now().Add(time.Hour).UnixMilli()); off != -1 {
		t.Errorf("after the last record: offset %d, want -1", off)
	}
}

// bufioReaders keeps one reader per connection across fuzz iterations.
var bufioReaders = map[net.Conn]*bufio.Reader{}

func bufioReader(c net.Conn) *bufio.Reader {
	if br, ok := bufioReaders[c]; ok {
		return br
	}
	br := bufio.NewReader(c)
	bufioReaders[c] = br
	return br
}

func TestProduceAndFetchErrors(t *testing.T) {
	_, _, addr := startNode(t, fileStore(t), "n")
	c := newClient(t, kgo.SeedBrokers(addr))
	createTopic(t, c, "errs", 1)
	rc := dial(t, addr)
	recs := []record.Record{{Timestamp: 1, Value: []byte("v")}}
	corrupt := appendBatch(nil, recs)
	corrupt[len(corrupt)-2] ^= 0xff // a record byte: the CRC no longer matches
	magic1 := appendBatch(nil, recs)
	magic1[16] = 1
	big := []record.Record{{Timestamp: 1, Value: make([]byte, 9<<20)}}
	for name, tc := range map[string]struct {
		frame []byte
		code  int16
	}{
		"unknown topic":     {produceFrame("nope", 0, -1, 1, recs), kerr.UnknownTopicOrPartition.Code},
		"unknown partition": {produceFrame("errs", 5, -1, 2, recs), kerr.UnknownTopicOrPartition.Code},
		"bad crc":           {produceBatchFrame("errs", 0, -1, 3, corrupt), kerr.CorruptMessage.Code},
		"magic 1":           {produceBatchFrame("errs", 0, -1, 4, magic1), kerr.UnsupportedForMessageFormat.Code},
		"too large":         {produceFrame("errs", 0, -1, 5, big), kerr.MessageTooLarge.Code},
	} {
		rc.send(tc.frame)
		resp := kmsg.NewPtrProduceResponse()
		resp.Version = 9
		if _, err := rc.recv(resp); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := resp.Topics[0].Partitions[0].ErrorCode; got != tc.code {
			t.Errorf("%s: code %d (%v), want %d", name, got, resp.Topics[0].Partitions[0].ErrorMessage, tc.code)
		}
	}
	f := kmsg.NewPtrFetchRequest()
	f.Version, f.MaxBytes = 12, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "errs"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes, fp.FetchOffset = 1<<20, 7
	ft.Partitions = append(ft.Partitions, fp)
	f.Topics = append(f.Topics, ft)
	rc.send(frame(f, 9))
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = 12
	if _, err := rc.recv(resp); err != nil {
		t.Fatal(err)
	}
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != kerr.OffsetOutOfRange.Code || p.HighWatermark != 0 || p.LogStartOffset != 0 {
		t.Errorf("fetch past the end: %+v", p)
	}
}

// TestProduceWaitDoesNotStallConnection holds a produce's commit and
// checks that a request sent after it on the same connection is handled
// meanwhile, and that the answers still come in request order.
func TestProduceWaitDoesNotStallConnection(t *testing.T) {
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	opts := shale.DefaultOptions()
	opts.Name = "n"
	opts.HotDir = t.TempDir()
	opts.RollAge = 20 * time.Millisecond
	opts.Hook = func(stage string) {
		if stage == "before-put" {
			select {
			case held <- struct{}{}:
				<-release // hold the first roll only
			default:
			}
		}
	}
	store := fileStore(t)
	n, err := shale.Start(context.Background(), store, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(n, Options{})
	addr, err := srv.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); n.Close() })
	c := newClient(t, kgo.SeedBrokers(addr))
	createTopic(t, c, "held", 1)

	rc := dial(t, addr)
	rc.send(produceFrame("held", 0, -1, 1, []record.Record{{Timestamp: 1, Value: []byte("v")}}))
	<-held
	create := kmsg.NewPtrCreateTopicsRequest()
	create.Version = 7
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "behind", 1, 1
	create.Topics = append(create.Topics, rt)
	rc.send(frame(create, 2))
	// The topic appears while the produce before it still waits.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := n.Log.Topic(context.Background(), "behind"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the request behind a waiting produce was not handled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	presp := kmsg.NewPtrProduceResponse()
	presp.Version = 9
	if corr, err := rc.recv(presp); err != nil || corr != 1 || presp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("first answer: corr %d, %v, %+v", corr, err, presp)
	}
	cresp := kmsg.NewPtrCreateTopicsResponse()
	cresp.Version = 7
	if corr, err := rc.recv(cresp); err != nil || corr != 2 || cresp.Topics[0].ErrorCode != 0 {
		t.Fatalf("second answer: corr %d, %v, %+v", corr, err, cresp)
	}
}
