// Package record is shale's record model, used by every layer: the Record
// itself, the limits every record must meet, the compact binary record
// encoding of hot segment frames and the HTTP API
// (docs/format/records.md), and Kafka's default key partitioner.
package record

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Header is one record header. Keys are strings, values arbitrary bytes,
// as in Kafka.
type Header struct {
	Key   string
	Value []byte
}

// Record is one log record. Offset is absolute once the record is
// committed; before that it is meaningless. Timestamp is milliseconds since
// the Unix epoch. A nil Key or Value is distinct from an empty one.
type Record struct {
	Offset    int64
	Timestamp int64
	Key       []byte
	Value     []byte
	Headers   []Header
}

// Size approximates the bytes a record occupies, for byte budgets.
func (r *Record) Size() int {
	n := 32 + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += 8 + len(h.Key) + len(h.Value)
	}
	return n
}

// Limits that keep a malformed or hostile encoding from allocating
// unbounded memory. They bound a single record, not a batch.
const (
	MaxHeaders   = 1 << 12
	MaxFieldSize = 1 << 30
	// MaxRecordBytes bounds one record as Bytes counts it. It is half the
	// memory the object decoder allows one record batch (a record larger
	// than a batch's byte limit gets a batch of its own), so every record
	// within it can be rolled into an object and read back.
	MaxRecordBytes = 128 << 20
	// HeaderOverhead is what each header adds to Bytes beyond its key and
	// value, so that many empty headers still count.
	HeaderOverhead = 8
)

var (
	// ErrMalformed is wrapped by every decoding error of the binary record
	// encoding.
	ErrMalformed = errors.New("malformed record encoding")
	// ErrInvalid is wrapped by every error of Check and Validate: a record
	// that decodes but breaks a limit. Front ends map it to a client error.
	ErrInvalid = errors.New("invalid record")
)

// Bytes is what a record produced to topic counts against MaxRecordBytes
// and the object encoder's batch limit: its key, value and header bytes,
// HeaderOverhead per header, plus the topic, which every row of an object
// repeats.
func Bytes(topic string, r *Record) int {
	n := len(topic) + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + HeaderOverhead
	}
	return n
}

// Check reports whether r, produced to topic, is within every limit that
// a record must meet anywhere on its way: the binary encoding's decoder,
// the object encoder and the object decoder. It is the one place those
// limits are checked, so that intake, rolls and reads agree: a record that
// passes Check at intake can always be rolled and read back. The error
// wraps ErrInvalid. (Fields over MaxFieldSize fail the byte limit, which
// is smaller.)
func (r *Record) Check(topic string) error {
	if n := len(r.Headers); n > MaxHeaders {
		return fmt.Errorf("%w: %d headers, the limit is %d", ErrInvalid, n, MaxHeaders)
	}
	if n := Bytes(topic, r); n > MaxRecordBytes {
		return fmt.Errorf("%w: %d bytes counting the topic name and %d per header, the limit is %d",
			ErrInvalid, n, HeaderOverhead, MaxRecordBytes)
	}
	return nil
}

// Validate checks every record of a batch for topic (Check), naming the
// first bad record by its index in recs.
func Validate(topic string, recs []Record) error {
	for i := range recs {
		if err := recs[i].Check(topic); err != nil {
			return fmt.Errorf("record %d of the batch for topic %q: %w", i, topic, err)
		}
	}
	return nil
}

// The binary record encoding, version 1 (docs/format/records.md): a
// sequence of records, each
//
//	offset     varint (zig-zag)
//	timestamp  varint (zig-zag)
//	key        uvarint length+1 (0 = null), bytes
//	value      uvarint length+1 (0 = null), bytes
//	headers    uvarint count, then per header:
//	             uvarint key length, key bytes,
//	             uvarint value length+1 (0 = null), value bytes
//
// Lengths are varints so that small records cost a few bytes of framing;
// the encoding is self-delimiting so records can be concatenated.

// Append appends the encoding of r to b.
func Append(b []byte, r *Record) []byte {
	b = binary.AppendVarint(b, r.Offset)
	b = binary.AppendVarint(b, r.Timestamp)
	b = appendNullable(b, r.Key)
	b = appendNullable(b, r.Value)
	b = binary.AppendUvarint(b, uint64(len(r.Headers)))
	for _, h := range r.Headers {
		b = binary.AppendUvarint(b, uint64(len(h.Key)))
		b = append(b, h.Key...)
		b = appendNullable(b, h.Value)
	}
	return b
}

func appendNullable(b, v []byte) []byte {
	if v == nil {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

// Decode decodes one record from the front of b and returns the
// number of bytes it used. Key, Value and header values alias b.
func Decode(b []byte) (Record, int, error) {
	d := decoder{b: b}
	var r Record
	r.Offset = d.varint()
	r.Timestamp = d.varint()
	r.Key = d.nullable()
	r.Value = d.nullable()
	n := d.uvarint()
	if n > MaxHeaders {
		d.fail("too many headers")
	}
	if d.err == nil && n > 0 {
		r.Headers = make([]Header, 0, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			k := d.bytes(d.uvarint())
			v := d.nullable()
			r.Headers = append(r.Headers, Header{Key: string(k), Value: v})
		}
	}
	if d.err != nil {
		return Record{}, 0, d.err
	}
	return r, d.off, nil
}

// DecodeAll decodes a concatenation of records.
func DecodeAll(b []byte) ([]Record, error) {
	var out []Record
	for off := 0; off < len(b); {
		r, n, err := Decode(b[off:])
		if err != nil {
			return nil, fmt.Errorf("record %d at byte %d: %w", len(out), off, err)
		}
		out = append(out, r)
		off += n
	}
	return out, nil
}

type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", ErrMalformed, what, d.off)
	}
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > MaxFieldSize || n > uint64(len(d.b)-d.off) {
		d.fail("field length exceeds input")
		return nil
	}
	v := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return v
}

func (d *decoder) nullable() []byte {
	n := d.uvarint()
	if d.err != nil || n == 0 {
		return nil
	}
	return d.bytes(n - 1)
}
