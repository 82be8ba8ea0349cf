package kafka

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale/record"
)

// FuzzConn sends arbitrary bytes on a connection of a running node
// (truncated frames, bad sizes, unknown keys and versions, corrupt
// batches, seeded with valid requests) and checks that the node neither
// panics nor lets it affect another connection, which must still answer.
func FuzzConn(f *testing.F) {
	recs := []record.Record{{Timestamp: 1, Key: []byte("k"), Value: []byte("v"), Headers: []record.Header{{Key: "h", Value: []byte("x")}}}}
	produce := produceFrame("fuzz", 0, -1, 1, recs)
	meta := kmsg.NewPtrMetadataRequest()
	meta.Version = 12
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 3
	av.ClientSoftwareName, av.ClientSoftwareVersion = "fuzz", "1"
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version, fetch.MaxBytes = 12, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "fuzz"
	ft.Partitions = append(ft.Partitions, kmsg.NewFetchRequestTopicPartition())
	fetch.Topics = append(fetch.Topics, ft)
	list := kmsg.NewPtrListOffsetsRequest()
	list.Version = 6
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "fuzz"
	lt.Partitions = append(lt.Partitions, kmsg.NewListOffsetsRequestTopicPartition())
	list.Topics = append(list.Topics, lt)
	for _, seed := range [][]byte{
		frame(av, 1), frame(meta, 2), produce, frame(fetch, 3), frame(list, 4),
		append(frame(av, 1), frame(meta, 2)...),
		produce[:len(produce)-3],
		{0, 0, 0, 8, 0, 18, 0, 99, 0, 0, 0, 1},
		{0xff, 0xff, 0xff, 0xff},
	} {
		f.Add(seed)
	}
	// A corrupt batch: one flipped byte past the CRC.
	bad := bytes.Clone(produce)
	bad[len(bad)-5] ^= 0xff
	f.Add(bad)

	_, _, addr := startNode(f, fileStore(f), "fuzz")
	c, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "fuzz", 1, 1
	req.Topics = append(req.Topics, rt)
	if _, err := req.RequestWith(context.Background(), c); err != nil {
		f.Fatal(err)
	}
	other, err := net.Dial("tcp", addr)
	if err != nil {
		f.Fatal(err)
	}
	defer other.Close()

	var corr int32
	f.Fuzz(func(t *testing.T, data []byte) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write(data)
		conn.(*net.TCPConn).CloseWrite()
		// Read what the server answers until it closes, or for a while:
		// a fetch may long-poll (up to 30 s) as Kafka's do.
		conn.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, conn)
		corr++
		rc := &rawConn{t: t, c: other, br: bufioReader(other)}
		rc.apiVersions(corr)
	})
}

// FuzzDecodeBatches checks the produce path's record batch decoder on
// arbitrary bytes: no panic, and what decodes encodes and decodes again to
// the same records.
func FuzzDecodeBatches(f *testing.F) {
	recs := []record.Record{{Offset: 5, Timestamp: 1000, Key: []byte("k"), Value: []byte("v"), Headers: []record.Header{{Key: "h"}}}, {Offset: 6, Timestamp: 999, Value: []byte{}}}
	b := appendBatch(nil, recs)
	f.Add(b)
	f.Add(append(bytes.Clone(b), b...))
	f.Add(b[:len(b)-1])
	f.Fuzz(func(t *testing.T, data []byte) {
		got, _, err := decodeBatches(data)
		if err != nil {
			return
		}
		for i := range got {
			got[i].Offset = int64(i)
		}
		again, _, err := decodeBatches(appendBatch(nil, got))
		if err != nil || len(again) != len(got) {
			t.Fatalf("re-decode: %d records, %v; want %d", len(again), err, len(got))
		}
		for i := range got {
			a, b := got[i], again[i]
			if a.Timestamp != b.Timestamp && a.Timestamp != 0 || !bytes.Equal(a.Key, b.Key) || (a.Key == nil) != (b.Key == nil) || !bytes.Equal(a.Value, b.Value) || len(a.Headers) != len(b.Headers) {
				t.Fatalf("record %d: %+v re-decoded as %+v", i, a, b)
			}
		}
	})
}
