package object

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
)

// DecodeBatch decodes one batch of object key from data, the bytes
// [b.Off, b.Off+b.Len) of the object as fetched by a range GET. It checks
// the length and CRC32C before anything else. The records' Offset is
// their offset delta; the caller adds the part's base offset from the
// commit metadata. Any mismatch or undecodable data yields a
// *tier.CorruptError, never records. The records' byte slices share one
// allocation per batch and do not alias data.
func DecodeBatch(key string, b Batch, data []byte) ([]record.Record, error) {
	fail := func(err error) ([]record.Record, error) {
		return nil, &tier.CorruptError{What: "object", Key: key, Offset: b.Off, Err: err}
	}
	if int64(len(data)) != b.Len {
		return fail(fmt.Errorf("batch is %d bytes, index says %d", len(data), b.Len))
	}
	if sum := crc32.Checksum(data, castagnoli); sum != b.CRC {
		return fail(fmt.Errorf("batch checksum %08x, index says %08x", sum, b.CRC))
	}
	d, err := decodeMessage(data)
	if err != nil {
		return fail(err)
	}
	if d.delta != b.Delta || int64(len(d.records)) != b.Rows {
		return fail(fmt.Errorf("batch holds deltas %d..%d, index says %d..%d",
			d.delta, d.delta+int64(len(d.records))-1, b.Delta, b.Delta+b.Rows-1))
	}
	return d.records, nil
}

// Decode reads a whole object: it checks the Arrow file's magic, footer
// and schema and returns the parts in file order, each with all its
// records, whose Offset is their offset delta. Without the index it cannot
// check CRCs, but data that breaks the Arrow or shale format rules yields
// a *tier.CorruptError.
func Decode(key string, data []byte) (parts []Part, err error) {
	blocks, footer, err := footerBlocks(data)
	if err != nil {
		return nil, &tier.CorruptError{What: "object", Key: key, Offset: footer, Err: err}
	}
	if err := checkSchema(data); err != nil {
		return nil, &tier.CorruptError{What: "object", Key: key, Offset: footer, Err: err}
	}
	seen := make(map[partKey]struct{})
	for _, blk := range blocks {
		d, err := decodeMessage(data[blk.off : blk.off+blk.len()])
		if err == nil {
			err = appendBatch(&parts, seen, d)
		}
		if err != nil {
			return nil, &tier.CorruptError{What: "object", Key: key, Offset: blk.off, Err: err}
		}
	}
	return parts, nil
}

// appendBatch adds a decoded batch to parts, enforcing that each part's
// batches are adjacent and their offset deltas contiguous from 0.
func appendBatch(parts *[]Part, seen map[partKey]struct{}, d decoded) error {
	ps := *parts
	if n := len(ps); n > 0 && ps[n-1].Topic == d.topic && ps[n-1].Partition == d.partition {
		last := &ps[n-1]
		if d.delta != int64(len(last.Records)) {
			return fmt.Errorf("batch of %s/%d starts at delta %d, want %d", d.topic, d.partition, d.delta, len(last.Records))
		}
		last.Records = append(last.Records, d.records...)
		return nil
	}
	k := partKey{d.topic, d.partition}
	if _, dup := seen[k]; dup {
		return fmt.Errorf("part %s/%d appears twice", d.topic, d.partition)
	}
	if d.delta != 0 {
		return fmt.Errorf("first batch of %s/%d starts at delta %d", d.topic, d.partition, d.delta)
	}
	seen[k] = struct{}{}
	*parts = append(ps, Part{Topic: d.topic, Partition: d.partition, Records: d.records})
	return nil
}

// decoded is one batch turned back into records.
type decoded struct {
	topic     string
	partition int32
	delta     int64 // offset_delta of the first row
	records   []record.Record
}

// decodeMessage decodes one encapsulated record batch message (a batch
// range of an object) against the v1 schema. arrow-go validates some of
// the structure and panics on some malformed input; both become errors
// here, and toRecords checks everything it reads.
func decodeMessage(msg []byte) (d decoded, err error) {
	defer func() {
		if p := recover(); p != nil {
			d, err = decoded{}, fmt.Errorf("decode batch: panic: %v", p)
		}
	}()
	const prefix = 8 // continuation marker 0xFFFFFFFF, int32 metadata length
	if len(msg) < prefix || binary.LittleEndian.Uint32(msg) != 0xFFFFFFFF {
		return d, errors.New("batch does not start with an IPC message prefix")
	}
	metaLen := int64(binary.LittleEndian.Uint32(msg[4:]))
	if metaLen < 4 || metaLen > int64(len(msg)-prefix) {
		return d, fmt.Errorf("message metadata length %d does not fit the batch", metaLen)
	}
	meta, body := msg[prefix:prefix+metaLen], msg[prefix+metaLen:]
	// arrow-go allocates the message's custom metadata by its vector
	// length; make sure that length fits the message first.
	mt, err := fbRoot(meta)
	if err == nil {
		_, _, err = mt.vector(messageMetadata, 4)
	}
	if err != nil {
		return d, fmt.Errorf("message metadata: %w", err)
	}
	mr := &messages{msgs: []*ipc.Message{
		ipc.NewMessage(memory.NewBufferBytes(schemaMeta()), memory.NewBufferBytes(nil)),
		ipc.NewMessage(memory.NewBufferBytes(meta), memory.NewBufferBytes(body)),
	}}
	if m := mr.msgs[1]; m.Type() != ipc.MessageRecordBatch || m.BodyLen() != int64(len(body)) {
		mr.Release()
		return d, fmt.Errorf("message is a %v with a %d-byte body, want a record batch with %d", m.Type(), m.BodyLen(), len(body))
	}
	// The reader releases mr, also when it fails.
	r, err := ipc.NewReaderFromMessageReader(mr, ipc.WithAllocator(newBoundedAllocator()))
	if err != nil {
		return d, err
	}
	defer r.Release()
	if !r.Next() {
		if err := r.Err(); err != nil {
			return d, err
		}
		return d, errors.New("no record batch in message")
	}
	return toRecords(r.RecordBatch())
}

// messages hands a fixed list of messages to an ipc.Reader.
type messages struct {
	msgs []*ipc.Message
	next int
}

func (m *messages) Message() (*ipc.Message, error) {
	if m.next == len(m.msgs) {
		return nil, io.EOF
	}
	m.next++
	return m.msgs[m.next-1], nil
}

func (m *messages) Retain() {}

func (m *messages) Release() {
	for _, msg := range m.msgs {
		msg.Release()
	}
	m.msgs = nil
}

// toRecords converts a v1 record batch into records. It trusts nothing
// about the arrays beyond their Go types: lengths, offsets, null counts
// and bitmaps are checked before use, so corrupt data that arrow-go let
// through becomes an error rather than wrong records.
func toRecords(rec arrow.RecordBatch) (decoded, error) {
	var d decoded
	n := int(rec.NumRows())
	if n <= 0 {
		return d, errors.New("empty record batch")
	}
	if int(rec.NumCols()) != numCols {
		return d, fmt.Errorf("record batch has %d columns, want %d", rec.NumCols(), numCols)
	}
	cols := make([]arrow.ArrayData, numCols)
	for i := range cols {
		cols[i] = rec.Column(i).Data()
		if cols[i].Len() != n || cols[i].Offset() != 0 {
			return d, fmt.Errorf("column %s has %d rows at offset %d, want %d at 0",
				schema.Field(i).Name, cols[i].Len(), cols[i].Offset(), n)
		}
	}
	for _, i := range []int{colTopic, colPartition, colOffsetDelta, colTimestamp, colHeaders} {
		if cols[i].NullN() != 0 {
			return d, fmt.Errorf("column %s has nulls", schema.Field(i).Name)
		}
	}

	topic, err := varColumn(cols[colTopic], n, false)
	if err != nil {
		return d, fmt.Errorf("column topic: %w", err)
	}
	first := topic.value(0)
	for i := 1; i < n; i++ {
		if !bytes.Equal(topic.value(i), first) {
			return d, errors.New("record batch holds more than one topic")
		}
	}
	partitions, err := fixedColumn[int32](cols[colPartition], n)
	if err != nil {
		return d, fmt.Errorf("column partition: %w", err)
	}
	for _, p := range partitions {
		if p != partitions[0] {
			return d, errors.New("record batch holds more than one partition")
		}
	}
	deltas, err := fixedColumn[int64](cols[colOffsetDelta], n)
	if err != nil {
		return d, fmt.Errorf("column offset_delta: %w", err)
	}
	if deltas[0] < 0 || deltas[0] > math.MaxInt64-int64(n) {
		return d, fmt.Errorf("offset_delta %d out of range", deltas[0])
	}
	for i, v := range deltas {
		if v != deltas[0]+int64(i) {
			return d, fmt.Errorf("offset_delta %d at row %d, want %d", v, i, deltas[0]+int64(i))
		}
	}
	timestamps, err := fixedColumn[int64](cols[colTimestamp], n)
	if err != nil {
		return d, fmt.Errorf("column timestamp: %w", err)
	}
	keys, err := varColumn(cols[colKey], n, true)
	if err != nil {
		return d, fmt.Errorf("column key: %w", err)
	}
	values, err := varColumn(cols[colValue], n, true)
	if err != nil {
		return d, fmt.Errorf("column value: %w", err)
	}

	// headers: list<struct<key, value>> with list offsets into the struct.
	hd := cols[colHeaders]
	if len(hd.Children()) != 1 {
		return d, errors.New("column headers has no struct child")
	}
	sd := hd.Children()[0]
	nh := sd.Len()
	if sd.Offset() != 0 || sd.NullN() != 0 || len(sd.Children()) != 2 {
		return d, errors.New("column headers: malformed struct")
	}
	hoffs, err := offsets32(hd, n, nh)
	if err != nil {
		return d, fmt.Errorf("column headers: %w", err)
	}
	hkd, hvd := sd.Children()[0], sd.Children()[1]
	if hkd.Len() != nh || hkd.Offset() != 0 || hvd.Len() != nh || hvd.Offset() != 0 {
		return d, errors.New("column headers: struct fields do not match the struct length")
	}
	if hkd.NullN() != 0 {
		return d, errors.New("column headers: null header key")
	}
	hkeys, err := varColumn(hkd, nh, false)
	if err != nil {
		return d, fmt.Errorf("column headers.key: %w", err)
	}
	hvals, err := varColumn(hvd, nh, true)
	if err != nil {
		return d, fmt.Errorf("column headers.value: %w", err)
	}

	// One allocation holds every key and value byte of the batch, and one
	// string every header key, so a record costs no allocation of its own.
	h0, h1 := int(hoffs[0]), int(hoffs[n])
	if n*int(unsafe.Sizeof(record.Record{}))+(h1-h0)*int(unsafe.Sizeof(record.Header{})) > maxBatchMemory {
		return d, fmt.Errorf("batch of %d records and %d headers is too large to decode", n, h1-h0)
	}
	arena := make([]byte, 0, keys.size()+values.size()+hvals.span(h0, h1))
	hkeyStr := string(hkeys.data[hkeys.offs[h0]:hkeys.offs[h1]])
	hkeyBase := int(hkeys.offs[h0])
	headers := make([]record.Header, h1-h0)
	records := make([]record.Record, n)
	topicName := string(first)
	for i := range records {
		r := &records[i]
		r.Offset = deltas[i]
		r.Timestamp = timestamps[i]
		r.Key, arena = keys.copyTo(arena, i)
		r.Value, arena = values.copyTo(arena, i)
		a, b := int(hoffs[i]), int(hoffs[i+1])
		if a < b {
			hs := headers[a-h0 : b-h0 : b-h0]
			for j := range hs {
				k := a + j
				hs[j].Key = hkeyStr[int(hkeys.offs[k])-hkeyBase : int(hkeys.offs[k+1])-hkeyBase]
				hs[j].Value, arena = hvals.copyTo(arena, k)
			}
			r.Headers = hs
		}
		// Hold decoding to the limits Encode enforces, so that whatever
		// decodes can be written again (the compactor relies on it).
		if err := r.Check(topicName); err != nil {
			return d, fmt.Errorf("row %d: %w", i, err)
		}
	}
	d.topic = topicName
	d.partition = partitions[0]
	d.delta = deltas[0]
	d.records = records
	return d, nil
}

// varView is a checked view of a utf8 or binary column.
type varView struct {
	valid []byte // nil when the column has no nulls
	offs  []int32
	data  []byte
}

func (v varView) null(i int) bool { return v.valid != nil && !bitutil.BitIsSet(v.valid, i) }

func (v varView) value(i int) []byte { return v.data[v.offs[i]:v.offs[i+1]] }

func (v varView) size() int { return int(v.offs[len(v.offs)-1] - v.offs[0]) }

func (v varView) span(a, b int) int { return int(v.offs[b] - v.offs[a]) }

// copyTo appends value i to arena and returns a capacity-limited slice of
// it (nil for null, non-nil empty for empty), with the grown arena.
func (v varView) copyTo(arena []byte, i int) ([]byte, []byte) {
	if v.null(i) {
		return nil, arena
	}
	start := len(arena)
	arena = append(arena, v.value(i)...)
	return arena[start:len(arena):len(arena)], arena
}

func varColumn(d arrow.ArrayData, n int, nullable bool) (varView, error) {
	var v varView
	bufs := d.Buffers()
	if len(bufs) != 3 {
		return v, fmt.Errorf("%d buffers, want 3", len(bufs))
	}
	if d.NullN() != 0 {
		if !nullable {
			return v, errors.New("unexpected nulls")
		}
		if d.NullN() < 0 || d.NullN() > n || bufs[0] == nil || bufs[0].Len() < (n+7)/8 {
			return v, fmt.Errorf("bad validity bitmap for %d nulls", d.NullN())
		}
		v.valid = bufs[0].Bytes()
	}
	if bufs[2] != nil {
		v.data = bufs[2].Bytes()
	}
	offs, err := offsets32(d, n, len(v.data))
	if err != nil {
		return v, err
	}
	v.offs = offs
	return v, nil
}

// offsets32 returns the n+1 offsets of a variable-length column, checked
// to be non-decreasing and within [0, limit].
func offsets32(d arrow.ArrayData, n, limit int) ([]int32, error) {
	bufs := d.Buffers()
	if len(bufs) < 2 || bufs[1] == nil {
		if n == 0 {
			return []int32{0}, nil
		}
		return nil, errors.New("missing offsets")
	}
	offs := arrow.Int32Traits.CastFromBytes(bufs[1].Bytes())
	if len(offs) < n+1 {
		return nil, fmt.Errorf("%d offsets for %d rows", len(offs), n)
	}
	offs = offs[:n+1]
	if offs[0] < 0 || int64(offs[n]) > int64(limit) {
		return nil, fmt.Errorf("offsets %d..%d outside [0, %d]", offs[0], offs[n], limit)
	}
	for i := 1; i <= n; i++ {
		if offs[i] < offs[i-1] {
			return nil, fmt.Errorf("offsets decrease at row %d", i)
		}
	}
	return offs, nil
}

func fixedColumn[T int32 | int64](d arrow.ArrayData, n int) ([]T, error) {
	bufs := d.Buffers()
	if len(bufs) != 2 || bufs[1] == nil {
		return nil, errors.New("missing values buffer")
	}
	var vals []T
	switch any(vals).(type) {
	case []int32:
		vals = any(arrow.Int32Traits.CastFromBytes(bufs[1].Bytes())).([]T)
	case []int64:
		vals = any(arrow.Int64Traits.CastFromBytes(bufs[1].Bytes())).([]T)
	}
	if len(vals) < n {
		return nil, fmt.Errorf("%d values for %d rows", len(vals), n)
	}
	return vals[:n], nil
}

// boundedAllocator is a Go allocator that panics once the bytes it has
// handed out and not taken back exceed maxBatchMemory. The ipc reader
// recovers the panic into an error. One decode uses it from one goroutine.
type boundedAllocator struct {
	mem  memory.Allocator
	left int
}

func newBoundedAllocator() *boundedAllocator {
	return &boundedAllocator{mem: memory.DefaultAllocator, left: maxBatchMemory}
}

var errTooBig = fmt.Errorf("decoding needs more than %d bytes of memory", maxBatchMemory)

func (a *boundedAllocator) take(n int) {
	if n > a.left {
		panic(errTooBig)
	}
	a.left -= n
}

func (a *boundedAllocator) Allocate(size int) []byte {
	if size < 0 {
		panic(fmt.Errorf("allocate %d bytes", size))
	}
	a.take(size)
	return a.mem.Allocate(size)
}

func (a *boundedAllocator) Reallocate(size int, b []byte) []byte {
	if size < 0 {
		panic(fmt.Errorf("reallocate %d bytes", size))
	}
	a.take(size - len(b))
	return a.mem.Reallocate(size, b)
}

func (a *boundedAllocator) Free(b []byte) {
	a.left += len(b)
	a.mem.Free(b)
}
