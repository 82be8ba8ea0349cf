package object

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/shalelog/shale/record"
)

// Encode writes parts into a new object and returns its bytes and an
// index whose entry i describes parts[i]. A part without records writes
// nothing and gets an entry with Count 0 and no batches. Two parts with the
// same topic and partition are an error, since their offset deltas would
// collide.
func Encode(parts []Part, c Compression) (data []byte, index []PartIndex, err error) {
	opts, err := c.options()
	if err != nil {
		return nil, nil, fmt.Errorf("encode object: %w", err)
	}
	// est bounds the size of the object so that its buffer never regrows:
	// with minSpaceSavings set, no Arrow buffer is stored larger than raw
	// plus its 8-byte length prefix. Two consecutive batches of a part
	// together exceed MaxBatchBytes unless the part or MaxBatchRows ends
	// the first, which bounds the number of batches.
	est, size, rows, batches := 4096, 0, 0, 0
	seen := make(map[partKey]struct{}, len(parts))
	for _, p := range parts {
		k := partKey{p.Topic, p.Partition}
		if _, dup := seen[k]; dup {
			return nil, nil, fmt.Errorf("encode object: duplicate part %s/%d", p.Topic, p.Partition)
		}
		seen[k] = struct{}{}
		for i := range p.Records {
			size += recordBytes(p.Topic, &p.Records[i])
		}
		rows += len(p.Records)
		batches++
	}
	batches += 2*size/MaxBatchBytes + rows/MaxBatchRows
	est += size + rows*rowOverhead + batches*batchOverhead

	var out bytes.Buffer
	out.Grow(est)
	opts = append(opts, ipc.WithSchema(schema), ipc.WithAllocator(memory.DefaultAllocator))
	w, err := ipc.NewFileWriter(&out, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("encode object: %w", err)
	}
	enc := encoders.Get().(*encoder)
	defer enc.release()

	index = make([]PartIndex, 0, len(parts))
	for _, p := range parts {
		pi := PartIndex{Topic: p.Topic, Partition: p.Partition, Count: int64(len(p.Records))}
		if len(p.Records) > 0 {
			pi.MinTimestamp, pi.MaxTimestamp = math.MaxInt64, math.MinInt64
		}
		for start := 0; start < len(p.Records); {
			end, batchBytes := start, 0
			for end < len(p.Records) && end-start < MaxBatchRows {
				r := &p.Records[end]
				pi.MinTimestamp = min(pi.MinTimestamp, r.Timestamp)
				pi.MaxTimestamp = max(pi.MaxTimestamp, r.Timestamp)
				if err := r.Check(p.Topic); err != nil {
					return nil, nil, fmt.Errorf("encode object: record %d of %s/%d: %w", end, p.Topic, p.Partition, err)
				}
				n := recordBytes(p.Topic, r)
				if end > start && batchBytes+n > MaxBatchBytes {
					break
				}
				batchBytes += n
				end++
			}
			rec := enc.batch(p.Topic, p.Partition, int64(start), p.Records[start:end])
			err := w.Write(rec)
			rec.Release()
			if err != nil {
				return nil, nil, fmt.Errorf("encode object: write batch of %s/%d at delta %d: %w", p.Topic, p.Partition, start, err)
			}
			pi.Batches = append(pi.Batches, Batch{Delta: int64(start), Rows: int64(end - start)})
			start = end
		}
		index = append(index, pi)
	}
	if err := w.Close(); err != nil {
		return nil, nil, fmt.Errorf("encode object: %w", err)
	}
	data = out.Bytes()

	// Take the byte ranges from the footer that was just written, so the
	// index says exactly what any Arrow reader finds there.
	blocks, _, err := footerBlocks(data)
	if err != nil {
		return nil, nil, fmt.Errorf("encode object: read back footer: %w", err)
	}
	i := 0
	for p := range index {
		for b := range index[p].Batches {
			if i == len(blocks) {
				return nil, nil, errors.New("encode object: footer lists fewer batches than written")
			}
			bt := &index[p].Batches[b]
			bt.Off, bt.Len = blocks[i].off, blocks[i].len()
			bt.CRC = crc32.Checksum(data[bt.Off:bt.Off+bt.Len], castagnoli)
			index[p].Bytes += bt.Len
			i++
		}
	}
	if i != len(blocks) {
		return nil, nil, fmt.Errorf("encode object: footer lists %d batches, wrote %d", len(blocks), i)
	}
	return data, index, nil
}

type partKey struct {
	topic     string
	partition int32
}

// rowOverhead bounds the fixed bytes a row takes beyond recordBytes:
// offsets, partition, offset delta, timestamp and validity bits (37).
// batchOverhead bounds a batch's message metadata (under 1 KiB for the v1
// schema), buffer padding and compression length prefixes.
const (
	rowOverhead   = 40
	batchOverhead = 2048
)

// recordBytes is what a record counts against MaxBatchBytes and the
// record limit: record.Bytes, which counts the topic and a fixed overhead
// per header so that a batch's topic column and header count stay bounded
// even for long topics or many empty headers.
func recordBytes(topic string, r *record.Record) int { return record.Bytes(topic, r) }

// encoder builds record batches straight into Go slices that it reuses
// from batch to batch and, through a pool, from object to object. Arrow's
// builders would reallocate per batch and check every append; this way a
// record costs appends to already-sized slices. Reuse is safe because the
// file writer has copied or compressed every buffer by the time Write
// returns.
type encoder struct {
	topic     varCol
	partition []int32
	delta     []int64
	timestamp []int64
	key       varCol
	value     varCol
	headers   []int32 // list offsets into the header columns
	hkey      varCol
	hvalue    varCol
}

var encoders = sync.Pool{New: func() any { return new(encoder) }}

// release returns enc to the pool unless a huge record has left it
// holding more memory than a normal batch needs.
func (enc *encoder) release() {
	if cap(enc.value.data)+cap(enc.key.data)+cap(enc.hvalue.data) > 4*MaxBatchBytes {
		return
	}
	encoders.Put(enc)
}

// batch builds the record batch of recs, whose first row has offset delta
// delta.
func (enc *encoder) batch(topic string, partition int32, delta int64, recs []record.Record) arrow.RecordBatch {
	n := len(recs)
	var nh, keys, values, hkeys, hvalues int
	for i := range recs {
		r := &recs[i]
		keys += len(r.Key)
		values += len(r.Value)
		nh += len(r.Headers)
		for _, h := range r.Headers {
			hkeys += len(h.Key)
			hvalues += len(h.Value)
		}
	}
	enc.topic.reset(n, n*len(topic))
	enc.key.reset(n, keys)
	enc.value.reset(n, values)
	enc.hkey.reset(nh, hkeys)
	enc.hvalue.reset(nh, hvalues)
	enc.partition = slices.Grow(enc.partition[:0], n)
	enc.delta = slices.Grow(enc.delta[:0], n)
	enc.timestamp = slices.Grow(enc.timestamp[:0], n)
	enc.headers = append(slices.Grow(enc.headers[:0], n+1), 0)

	for i := range recs {
		r := &recs[i]
		enc.topic.addString(topic)
		enc.partition = append(enc.partition, partition)
		enc.delta = append(enc.delta, delta+int64(i))
		enc.timestamp = append(enc.timestamp, r.Timestamp)
		enc.key.addNullable(r.Key)
		enc.value.addNullable(r.Value)
		for _, h := range r.Headers {
			enc.hkey.addString(h.Key)
			enc.hvalue.addNullable(h.Value)
		}
		enc.headers = append(enc.headers, int32(len(enc.hkey.offs)-1))
	}

	hdrs := array.NewData(headerType, nh, []*memory.Buffer{nil}, []arrow.ArrayData{
		enc.hkey.arrayData(arrow.BinaryTypes.String),
		enc.hvalue.arrayData(arrow.BinaryTypes.Binary),
	}, 0, 0)
	data := [numCols]arrow.ArrayData{
		colTopic:       enc.topic.arrayData(arrow.BinaryTypes.String),
		colPartition:   fixedData(arrow.PrimitiveTypes.Int32, n, arrow.Int32Traits.CastToBytes(enc.partition)),
		colOffsetDelta: fixedData(arrow.PrimitiveTypes.Int64, n, arrow.Int64Traits.CastToBytes(enc.delta)),
		colTimestamp:   fixedData(schema.Field(colTimestamp).Type, n, arrow.Int64Traits.CastToBytes(enc.timestamp)),
		colKey:         enc.key.arrayData(arrow.BinaryTypes.Binary),
		colValue:       enc.value.arrayData(arrow.BinaryTypes.Binary),
		colHeaders: array.NewData(headersType, n, []*memory.Buffer{
			nil, memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(enc.headers)),
		}, []arrow.ArrayData{hdrs}, 0, 0),
	}
	cols := make([]arrow.Array, numCols)
	for i, d := range data {
		cols[i] = array.MakeFromData(d)
	}
	return array.NewRecordBatch(schema, cols, int64(n))
}

func fixedData(dt arrow.DataType, n int, b []byte) arrow.ArrayData {
	return array.NewData(dt, n, []*memory.Buffer{nil, memory.NewBufferBytes(b)}, nil, 0, 0)
}

// varCol accumulates a utf8 or binary column: validity bits (1 = valid),
// n+1 offsets and the value bytes.
type varCol struct {
	valid []byte
	offs  []int32
	data  []byte
	nulls int
}

func (c *varCol) reset(rows, size int) {
	c.valid = slices.Grow(c.valid[:0], (rows+7)/8)
	c.offs = append(slices.Grow(c.offs[:0], rows+1), 0)
	c.data = slices.Grow(c.data[:0], size)
	c.nulls = 0
}

func (c *varCol) addString(s string) {
	c.data = append(c.data, s...)
	c.offs = append(c.offs, int32(len(c.data)))
}

// addNullable appends v, or a null if v is nil. The validity bitmap is
// kept for every row but written only if the column has a null.
func (c *varCol) addNullable(v []byte) {
	i := len(c.offs) - 1
	if i%8 == 0 {
		c.valid = append(c.valid, 0)
	}
	if v == nil {
		c.nulls++
	} else {
		c.valid[i/8] |= 1 << (i % 8)
		c.data = append(c.data, v...)
	}
	c.offs = append(c.offs, int32(len(c.data)))
}

func (c *varCol) arrayData(dt arrow.DataType) arrow.ArrayData {
	var valid *memory.Buffer
	if c.nulls > 0 {
		valid = memory.NewBufferBytes(c.valid)
	}
	return array.NewData(dt, len(c.offs)-1, []*memory.Buffer{
		valid,
		memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(c.offs)),
		memory.NewBufferBytes(c.data),
	}, nil, c.nulls, 0)
}
