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
)

// ErrMalformed is wrapped by every decoding error of the binary record
// encoding.
var ErrMalformed = errors.New("malformed record encoding")

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
