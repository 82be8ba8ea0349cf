package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/record"
)

// compressBatch rewrites an uncompressed batch with its records compressed
// by codec, as a producer would.
func compressBatch(t *testing.T, b []byte, codec int16) []byte {
	t.Helper()
	recs := b[batchHeaderLen:]
	var out bytes.Buffer
	switch codec {
	case 1:
		w := gzip.NewWriter(&out)
		w.Write(recs)
		w.Close()
	case 2:
		out.Write(s2.EncodeSnappy(nil, recs))
	case 5: // snappy in xerial framing, two blocks
		out.Write(xerialMagic)
		out.Write([]byte{0, 0, 0, 1, 0, 0, 0, 1})
		for _, part := range [][]byte{recs[:len(recs)/2], recs[len(recs)/2:]} {
			blk := s2.EncodeSnappy(nil, part)
			out.Write(binary.BigEndian.AppendUint32(nil, uint32(len(blk))))
			out.Write(blk)
		}
		codec = 2
	case 3:
		w := lz4.NewWriter(&out)
		w.Write(recs)
		w.Close()
	case 4:
		w, _ := zstd.NewWriter(&out)
		w.Write(recs)
		w.Close()
	}
	nb := append(bytes.Clone(b[:batchHeaderLen]), out.Bytes()...)
	binary.BigEndian.PutUint32(nb[8:], uint32(len(nb)-12))
	binary.BigEndian.PutUint16(nb[21:], uint16(codec))
	binary.BigEndian.PutUint32(nb[17:], crc32.Checksum(nb[crcFrom:], castagnoli))
	return nb
}

func TestDecodeCompressedBatches(t *testing.T) {
	var recs []record.Record
	for i := range 200 {
		recs = append(recs, record.Record{Offset: int64(i), Timestamp: int64(1000 + i), Key: []byte("key"), Value: bytes.Repeat([]byte("v"), 100), Headers: []record.Header{{Key: "h", Value: []byte{byte(i)}}}})
	}
	plain := appendBatch(nil, recs)
	for name, codec := range map[string]int16{"gzip": 1, "snappy": 2, "xerial": 5, "lz4": 3, "zstd": 4} {
		t.Run(name, func(t *testing.T) {
			b := compressBatch(t, plain, codec)
			got, _, err := decodeBatches(b)
			if err != nil || len(got) != len(recs) {
				t.Fatalf("decoded %d records: %v", len(got), err)
			}
			for i := range got {
				if got[i].Timestamp != recs[i].Timestamp || !bytes.Equal(got[i].Value, recs[i].Value) || got[i].Headers[0].Value[0] != byte(i) {
					t.Fatalf("record %d: %+v", i, got[i])
				}
			}
			// Past the bound, a batch is refused as too large, before its
			// whole content is allocated.
			if _, _, err := decodeBatchesLimit(b, 1000); !errors.Is(err, ingest.ErrTooLarge) {
				t.Fatalf("decode with a 1000-byte bound: %v", err)
			}
		})
	}
}
