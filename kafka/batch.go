package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/record"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// batchHeaderLen is a record batch's size up to its records, and crcFrom
// where the CRC-32C coverage starts (the attributes).
const (
	batchHeaderLen = 61
	crcFrom        = 21
)

// producerBatch is what an idempotent producer says of a batch; Produce
// passes it on so producer state can be checked when ingest keeps it.
type producerBatch struct {
	ID       int64
	Epoch    int16
	Sequence int32
}

// decodeBatches decodes the record batches of one partition of a produce
// request: magic 2 only, CRC-32C checked, any of Kafka's compressions. The
// records keep their timestamps (CreateTime), keys, values and headers.
// It bounds each batch's decompressed records at maxDecompressed;
// decodeBatchesLimit takes the bound.
func decodeBatches(b []byte) ([]record.Record, producerBatch, error) {
	return decodeBatchesLimit(b, maxDecompressed)
}

// maxDecompressed bounds one batch's decompressed records: above ingest's
// default batch limit (8 MiB, which counts shale's encoding, about the
// same size) with room to spare; a batch ingest accepts decompresses
// within it.
const maxDecompressed = 64 << 20

func decodeBatchesLimit(b []byte, limit int) ([]record.Record, producerBatch, error) {
	var recs []record.Record
	pb := producerBatch{ID: -1, Epoch: -1, Sequence: -1}
	if len(b) == 0 {
		return nil, pb, fmt.Errorf("%w: no records", errCorrupt)
	}
	for len(b) > 0 {
		if len(b) < 17 {
			return nil, pb, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(b))
		}
		if magic := int8(b[16]); magic != 2 {
			return nil, pb, fmt.Errorf("%w: magic %d (want 2)", errUnsupportedFormat, magic)
		}
		length := int32(binary.BigEndian.Uint32(b[8:]))
		if length < batchHeaderLen-12 || int64(length)+12 > int64(len(b)) {
			return nil, pb, fmt.Errorf("%w: batch length %d with %d bytes left", errCorrupt, length, len(b)-12)
		}
		raw := b[:12+length]
		b = b[12+length:]
		var batch kmsg.RecordBatch
		if err := batch.ReadFrom(raw); err != nil {
			return nil, pb, fmt.Errorf("%w: %v", errCorrupt, err)
		}
		if got := crc32.Checksum(raw[crcFrom:], castagnoli); got != uint32(batch.CRC) {
			return nil, pb, fmt.Errorf("%w: CRC-32C %08x, want %08x", errCorrupt, got, uint32(batch.CRC))
		}
		if batch.Attributes&0x30 != 0 {
			return nil, pb, fmt.Errorf("%w: transactional or control batch", errUnsupportedFormat)
		}
		if pb.ID < 0 {
			pb = producerBatch{ID: batch.ProducerID, Epoch: batch.ProducerEpoch, Sequence: batch.FirstSequence}
		}
		codec := batch.Attributes & 0x07
		if codec > 4 {
			return nil, pb, fmt.Errorf("%w: compression codec %d", errCorrupt, codec)
		}
		data, err := decompress(batch.Records, codec, limit)
		if errors.Is(err, errDecompressedTooLarge) {
			return nil, pb, fmt.Errorf("%w: %w", ingest.ErrTooLarge, err)
		}
		if err != nil {
			return nil, pb, fmt.Errorf("%w: decompress: %v", errCorrupt, err)
		}
		if batch.NumRecords < 0 || int64(batch.NumRecords) > int64(len(data)) { // a record takes 7 bytes at least
			return nil, pb, fmt.Errorf("%w: %d records in %d bytes", errCorrupt, batch.NumRecords, len(data))
		}
		for i := int32(0); i < batch.NumRecords; i++ {
			r, n, err := decodeRecord(data)
			if err != nil {
				return nil, pb, fmt.Errorf("%w: record %d: %v", errCorrupt, i, err)
			}
			data = data[n:]
			ts := batch.FirstTimestamp + r.TimestampDelta64
			if batch.FirstTimestamp < 0 {
				ts = 0 // no timestamp: ingest stamps the append time
			}
			rec := record.Record{Timestamp: ts, Key: r.Key, Value: r.Value}
			if len(r.Headers) > 0 {
				rec.Headers = make([]record.Header, len(r.Headers))
				for j, h := range r.Headers {
					rec.Headers[j] = record.Header{Key: h.Key, Value: h.Value}
				}
			}
			recs = append(recs, rec)
		}
		if len(data) != 0 {
			return nil, pb, fmt.Errorf("%w: %d bytes after %d records", errCorrupt, len(data), batch.NumRecords)
		}
	}
	if len(recs) == 0 {
		return nil, pb, fmt.Errorf("%w: no records", errCorrupt)
	}
	return recs, pb, nil
}

// decodeRecord decodes one length-prefixed record and returns its size.
func decodeRecord(b []byte) (kmsg.Record, int, error) {
	l, head := binary.Varint(b) // Kafka's varints are zigzag, as Go's
	if head <= 0 {
		return kmsg.Record{}, 0, fmt.Errorf("bad length varint")
	}
	if l < 0 || l > int64(len(b)-head) {
		return kmsg.Record{}, 0, fmt.Errorf("length %d with %d bytes left", l, len(b)-head)
	}
	var r kmsg.Record
	if err := r.ReadFrom(b[:head+int(l)]); err != nil {
		return kmsg.Record{}, 0, err
	}
	return r, head + int(l), nil
}

// appendBatch appends recs, which have contiguous offsets, as one
// uncompressed magic 2 record batch.
func appendBatch(dst []byte, recs []record.Record) []byte {
	first, maxTs := recs[0].Timestamp, recs[0].Timestamp
	for i := range recs {
		maxTs = max(maxTs, recs[i].Timestamp)
	}
	var body, tmp []byte
	for i := range recs {
		r := &recs[i]
		kr := kmsg.Record{TimestampDelta64: r.Timestamp - first, OffsetDelta: int32(r.Offset - recs[0].Offset), Key: r.Key, Value: r.Value}
		if kr.TimestampDelta64 != 0 {
			kr.TimestampDelta = int32(kr.TimestampDelta64) // AppendTo writes Delta64 only when nonzero
		}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kmsg.Header{Key: h.Key, Value: h.Value})
		}
		tmp = kr.AppendTo(tmp[:0]) // Length 0: a one-byte varint, then the record
		body = kbin.AppendVarint(body, int32(len(tmp)-1))
		body = append(body, tmp[1:]...)
	}
	batch := kmsg.RecordBatch{
		FirstOffset:          recs[0].Offset,
		Length:               int32(batchHeaderLen - 12 + len(body)),
		PartitionLeaderEpoch: -1,
		Magic:                2,
		LastOffsetDelta:      int32(recs[len(recs)-1].Offset - recs[0].Offset),
		FirstTimestamp:       first,
		MaxTimestamp:         maxTs,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           int32(len(recs)),
		Records:              body,
	}
	start := len(dst)
	dst = batch.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start+17:], crc32.Checksum(dst[start+crcFrom:], castagnoli))
	return dst
}
