package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
)

// Hot segment files (docs/format/segment.md): an 8-byte header, then
// frames. Each frame is one produce request's records for one partition:
//
//	length  uint32 LE   bytes of payload
//	crc     uint32 LE   CRC32C (Castagnoli) of payload
//	payload:
//	  version    uint8 = 2
//	  flags      uint8: bit 0 set for an idempotent producer's batch
//	  producer   if bit 0: id varint, epoch varint, first sequence varint
//	  topic      uvarint length, bytes
//	  topic id   uvarint length, bytes
//	  partition  varint
//	  count      uvarint
//	  records    the binary record encoding (docs/format/records.md)
const segmentMagic = "SHALEHS2"

const (
	frameHeaderLen = 8
	frameVersion   = 2
	maxFrameLen    = 1 << 30
	flagProducer   = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Frame is a decoded hot segment frame.
type Frame struct {
	Topic     string
	TopicID   string
	Partition int32
	Producer  *Producer // nil unless an idempotent producer's batch
	Records   []record.Record
}

// appendFrame appends the frame for records to b. Records with a zero
// timestamp get now. prod is the idempotent producer's batch, or nil.
func appendFrame(b []byte, topic, topicID string, partition int32, recs []record.Record, now int64, prod *Producer) []byte {
	size := frameHeaderLen + 64 + len(topic) + len(topicID)
	for i := range recs {
		size += recs[i].Size()
	}
	b = slices.Grow(b, size)
	start := len(b)
	b = append(b, make([]byte, frameHeaderLen)...)
	b = append(b, frameVersion)
	if prod != nil {
		b = append(b, flagProducer)
		b = binary.AppendVarint(b, prod.ID)
		b = binary.AppendVarint(b, int64(prod.Epoch))
		b = binary.AppendVarint(b, int64(prod.Seq))
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(topic)))
	b = append(b, topic...)
	b = binary.AppendUvarint(b, uint64(len(topicID)))
	b = append(b, topicID...)
	b = binary.AppendVarint(b, int64(partition))
	b = binary.AppendUvarint(b, uint64(len(recs)))
	for i := range recs {
		r := &recs[i]
		if r.Timestamp == 0 {
			c := *r
			c.Timestamp = now
			r = &c
		}
		b = record.Append(b, r)
	}
	payload := b[start+frameHeaderLen:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, castagnoli))
	return b
}

// decodeFrame decodes the frame at the front of b, returning it and its
// encoded length. Errors are not yet wrapped with the file and offset.
func decodeFrame(b []byte) (Frame, int, error) {
	if len(b) < frameHeaderLen {
		return Frame{}, 0, errors.New("truncated frame header")
	}
	n := binary.LittleEndian.Uint32(b)
	if n > maxFrameLen || int64(n) > int64(len(b)-frameHeaderLen) {
		return Frame{}, 0, fmt.Errorf("frame length %d exceeds the %d bytes left", n, len(b)-frameHeaderLen)
	}
	payload := b[frameHeaderLen : frameHeaderLen+int(n)]
	if got, want := crc32.Checksum(payload, castagnoli), binary.LittleEndian.Uint32(b[4:]); got != want {
		return Frame{}, 0, fmt.Errorf("frame checksum %08x, want %08x", got, want)
	}
	f, err := decodePayload(payload)
	return f, frameHeaderLen + int(n), err
}

func decodePayload(p []byte) (Frame, error) {
	var f Frame
	if len(p) < 2 || p[0] != frameVersion {
		return f, errors.New("unknown frame version")
	}
	off := 2
	varint := func(lo, hi int64) (int64, bool) {
		v, k := binary.Varint(p[off:])
		if k <= 0 || v < lo || v > hi {
			return 0, false
		}
		off += k
		return v, true
	}
	switch p[1] {
	case 0:
	case flagProducer:
		id, ok1 := varint(0, math.MaxInt64)
		epoch, ok2 := varint(0, math.MaxInt16)
		seq, ok3 := varint(0, math.MaxInt32)
		if !ok1 || !ok2 || !ok3 {
			return f, errors.New("bad producer")
		}
		f.Producer = &Producer{ID: id, Epoch: int16(epoch), Seq: int32(seq)}
	default:
		return f, fmt.Errorf("unknown frame flags %#x", p[1])
	}
	str := func() (string, error) {
		l, k := binary.Uvarint(p[off:])
		if k <= 0 || l > uint64(len(p)-off-k) {
			return "", errors.New("bad string length")
		}
		off += k
		s := string(p[off : off+int(l)])
		off += int(l)
		return s, nil
	}
	var err error
	if f.Topic, err = str(); err != nil {
		return f, err
	}
	if f.TopicID, err = str(); err != nil {
		return f, err
	}
	part, k := binary.Varint(p[off:])
	if k <= 0 || part < 0 || part > 1<<31-1 {
		return f, errors.New("bad partition")
	}
	off += k
	f.Partition = int32(part)
	count, k := binary.Uvarint(p[off:])
	if k <= 0 || count > uint64(len(p)) {
		return f, errors.New("bad record count")
	}
	off += k
	f.Records = make([]record.Record, 0, count)
	for i := uint64(0); i < count; i++ {
		r, n, err := record.Decode(p[off:])
		if err != nil {
			return f, fmt.Errorf("record %d: %w", i, err)
		}
		f.Records = append(f.Records, r)
		off += n
	}
	if off != len(p) {
		return f, fmt.Errorf("%d trailing bytes after %d records", len(p)-off, count)
	}
	return f, nil
}

// DecodeSegment decodes a whole hot segment file. A torn or corrupt frame
// ends decoding with a *tier.CorruptError naming file and offset; the frames
// before it are returned.
func DecodeSegment(file string, data []byte) ([]Frame, error) {
	if len(data) < len(segmentMagic) || string(data[:len(segmentMagic)]) != segmentMagic {
		return nil, &tier.CorruptError{What: "hot segment", Key: file, Offset: 0, Err: errors.New("bad segment magic")}
	}
	var frames []Frame
	for off := len(segmentMagic); off < len(data); {
		f, n, err := decodeFrame(data[off:])
		if err != nil {
			return frames, &tier.CorruptError{What: "hot segment", Key: file, Offset: int64(off), Err: err}
		}
		frames = append(frames, f)
		off += n
	}
	return frames, nil
}
