package object

// The data object, format version 1 (docs/format/object.md): an Arrow IPC
// file with one row per record. Every record batch holds rows of exactly
// one (topic, partition) part, so a reader that wants one partition fetches
// only that part's batches with range GETs, using the per-batch byte ranges
// and CRC32C checksums that Encode returns and the commit metadata keeps.
// A batch range is one encapsulated IPC message; DecodeBatch turns it back
// into records without the file's footer by pairing it with the schema
// message, which is the same for every v1 object.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"strconv"
	"sync"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// FormatVersion is the version of the object format that Encode writes and
// Decode reads. It is stored in the schema metadata under
// "shale.format_version".
const FormatVersion = 1

// Batch size limits. Encode starts a new record batch for a part when the
// current one holds MaxBatchRows rows, or when the next record would push
// its bytes past MaxBatchBytes, counting key, value and header bytes, the
// topic name and 8 bytes per header. A single larger record gets a batch
// of its own.
const (
	MaxBatchBytes = 1 << 20
	MaxBatchRows  = 16384
)

// maxBatchMemory bounds the memory that decoding one batch may allocate, in
// Arrow buffers and again in records, so that a corrupt length field
// cannot make the process allocate without limit (Go's out-of-memory is
// fatal, not a recoverable panic). It equals arrow-go's default body size
// limit for readers. Encode refuses records over maxRecordBytes, or with
// more than MaxHeaders headers, so every batch it writes decodes within
// the bound.
const (
	maxBatchMemory = 256 << 20
	maxRecordBytes = maxBatchMemory / 2
)

// Schema metadata keys and values that identify a v1 object.
const (
	metaFormat        = "shale.format"
	metaFormatVersion = "shale.format_version"
	formatName        = "object"
)

// Column positions in the v1 schema.
const (
	colTopic = iota
	colPartition
	colOffsetDelta
	colTimestamp
	colKey
	colValue
	colHeaders
	numCols
)

var (
	headerType = arrow.StructOf(
		arrow.Field{Name: "key", Type: arrow.BinaryTypes.String},
		arrow.Field{Name: "value", Type: arrow.BinaryTypes.Binary, Nullable: true},
	)
	headersType = arrow.ListOfNonNullable(headerType)

	schema = arrow.NewSchema([]arrow.Field{
		colTopic:       {Name: "topic", Type: arrow.BinaryTypes.String},
		colPartition:   {Name: "partition", Type: arrow.PrimitiveTypes.Int32},
		colOffsetDelta: {Name: "offset_delta", Type: arrow.PrimitiveTypes.Int64},
		colTimestamp:   {Name: "timestamp", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
		colKey:         {Name: "key", Type: arrow.BinaryTypes.Binary, Nullable: true},
		colValue:       {Name: "value", Type: arrow.BinaryTypes.Binary, Nullable: true},
		colHeaders:     {Name: "headers", Type: headersType},
	}, func() *arrow.Metadata {
		md := arrow.NewMetadata(
			[]string{metaFormat, metaFormatVersion},
			[]string{formatName, strconv.Itoa(FormatVersion)},
		)
		return &md
	}())

	// schemaMeta is the flatbuffer metadata of the v1 schema message. The
	// schema message carries no compression setting (that is per batch),
	// so one serves every object.
	schemaMeta = sync.OnceValue(func() []byte {
		p := ipc.GetSchemaPayload(schema, memory.DefaultAllocator)
		defer p.Release()
		meta := p.Meta()
		defer meta.Release()
		return bytes.Clone(meta.Bytes())
	})

	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// Compression selects the codec for the Arrow buffers of an object.
type Compression int

const (
	// CompressionLZ4 compresses buffers with LZ4 frames. It is the default:
	// it costs little CPU on the ingest path and decompresses fast.
	CompressionLZ4 Compression = iota
	// CompressionZstd compresses buffers with Zstandard: smaller objects
	// for more CPU, e.g. for the compactor.
	CompressionZstd
	// CompressionNone stores buffers raw.
	CompressionNone
)

func (c Compression) String() string {
	switch c {
	case CompressionLZ4:
		return "lz4"
	case CompressionZstd:
		return "zstd"
	case CompressionNone:
		return "none"
	}
	return "Compression(" + strconv.Itoa(int(c)) + ")"
}

// ParseCompression parses "lz4", "zstd" or "none".
func ParseCompression(s string) (Compression, error) {
	for _, c := range []Compression{CompressionLZ4, CompressionZstd, CompressionNone} {
		if s == c.String() {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown compression %q: want lz4, zstd or none", s)
}

// minSpaceSavings makes the writer store a compressed buffer raw unless
// compression saves at least this fraction of it. Values that are already
// compressed or encrypted then cost readers no decompression and take no
// more space than raw; the codec still runs once on the write path.
const minSpaceSavings = 0.1

func (c Compression) options() ([]ipc.Option, error) {
	switch c {
	case CompressionLZ4:
		return []ipc.Option{ipc.WithLZ4(), ipc.WithMinSpaceSavings(minSpaceSavings)}, nil
	case CompressionZstd:
		return []ipc.Option{ipc.WithZstd(), ipc.WithMinSpaceSavings(minSpaceSavings)}, nil
	case CompressionNone:
		return nil, nil
	}
	return nil, fmt.Errorf("unknown compression %d", int(c))
}

// Part is the records of one topic-partition in an object. Record.Offset
// is ignored by Encode: a record's position in Records is its offset delta.
type Part struct {
	Topic     string
	Partition int32
	Records   []Record
}

// Batch locates one record batch of a part in an object.
type Batch struct {
	// Delta is the offset_delta of the batch's first row.
	Delta int64
	// Rows is the number of records in the batch.
	Rows int64
	// Off and Len are the byte range [Off, Off+Len) of the batch's
	// complete IPC message in the object, as in the Arrow file footer.
	Off int64
	Len int64
	// CRC is the CRC32C (Castagnoli) of those bytes.
	CRC uint32
}

// PartIndex describes the part of one topic-partition in an object. It is
// what the commit metadata records so that readers can fetch a part's
// batches without reading the object's footer.
type PartIndex struct {
	Topic     string
	Partition int32
	// Count is the number of records; their offset deltas are 0..Count-1.
	Count int64
	// MinTimestamp and MaxTimestamp bound the records' timestamps.
	MinTimestamp, MaxTimestamp int64
	// Bytes is the size of the part's batches in the object, the sum of
	// their Len.
	Bytes   int64
	Batches []Batch
}

// CorruptError reports an object, or a batch range of one, that does not
// decode: a checksum or length mismatch, a torn or truncated file, or
// Arrow data that breaks the format's rules. Offset is the byte in the
// object where the bad batch or structure starts.
type CorruptError struct {
	Key    string
	Offset int64
	Err    error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("corrupt object %s at byte %d: %v", e.Key, e.Offset, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

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
				n := recordBytes(p.Topic, r)
				if n > maxRecordBytes || len(r.Headers) > MaxHeaders {
					return nil, nil, fmt.Errorf("encode object: record %d of %s/%d has %d bytes and %d headers, over the limit of %d and %d",
						end, p.Topic, p.Partition, n, len(r.Headers), maxRecordBytes, MaxHeaders)
				}
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

// recordBytes is what a record counts against MaxBatchBytes: its key,
// value and header bytes, plus the topic, which every row repeats, and
// headerOverhead per header. The last two keep a batch's topic column and
// header count bounded even for long topics or many empty headers.
func recordBytes(topic string, r *Record) int {
	n := len(topic) + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + headerOverhead
	}
	return n
}

const headerOverhead = 8

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
func (enc *encoder) batch(topic string, partition int32, delta int64, recs []Record) arrow.RecordBatch {
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

// DecodeBatch decodes one batch of object key from data, the bytes
// [b.Off, b.Off+b.Len) of the object as fetched by a range GET. It checks
// the length and CRC32C before anything else. The records' Offset is
// their offset delta; the caller adds the part's base offset from the
// commit metadata. Any mismatch or undecodable data yields a
// *CorruptError, never records. The records' byte slices share one
// allocation per batch and do not alias data.
func DecodeBatch(key string, b Batch, data []byte) ([]Record, error) {
	fail := func(err error) ([]Record, error) {
		return nil, &CorruptError{Key: key, Offset: b.Off, Err: err}
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
// a *CorruptError.
func Decode(key string, data []byte) (parts []Part, err error) {
	blocks, footer, err := footerBlocks(data)
	if err != nil {
		return nil, &CorruptError{Key: key, Offset: footer, Err: err}
	}
	if err := checkSchema(data); err != nil {
		return nil, &CorruptError{Key: key, Offset: footer, Err: err}
	}
	seen := make(map[partKey]struct{})
	for _, blk := range blocks {
		d, err := decodeMessage(data[blk.off : blk.off+blk.len()])
		if err == nil {
			err = appendBatch(&parts, seen, d)
		}
		if err != nil {
			return nil, &CorruptError{Key: key, Offset: blk.off, Err: err}
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

// block is one entry of an Arrow file footer: an encapsulated message of
// meta bytes (prefix, flatbuffer and padding) followed by body bytes.
type block struct {
	off  int64
	meta int64
	body int64
}

func (b block) len() int64 { return b.meta + b.body }

// Arrow file framing: "ARROW1", two bytes of padding, the stream of
// messages, the footer flatbuffer, its int32 length, "ARROW1".
const (
	fileHeaderLen  = 8
	fileTrailerLen = 4 + 6
)

// Flatbuffer slots (field numbers) of the Arrow tables read here, taken
// from Arrow's File.fbs, Schema.fbs and Message.fbs.
const (
	footerSchema        = 1 // Footer.schema: Schema
	footerRecordBatches = 3 // Footer.recordBatches: [Block]
	schemaFields        = 1 // Schema.fields: [Field]
	schemaMetadata      = 2 // Schema.custom_metadata: [KeyValue]
	fieldName           = 0 // Field.name: string
	keyValueKey         = 0 // KeyValue.key: string
	keyValueValue       = 1 // KeyValue.value: string
	messageMetadata     = 4 // Message.custom_metadata: [KeyValue]

	blockSize = 24 // struct Block {offset: long; metaDataLength: int; bodyLength: long}
)

// footer finds the footer flatbuffer of the Arrow file data and returns it
// with its offset in data.
func footer(data []byte) (fbTable, int64, error) {
	n := int64(len(data))
	if n < fileHeaderLen+fileTrailerLen {
		return fbTable{}, 0, fmt.Errorf("file of %d bytes is too short for an Arrow file", n)
	}
	if !bytes.Equal(data[:len(ipc.Magic)], ipc.Magic) {
		return fbTable{}, 0, errors.New("missing Arrow file magic at start")
	}
	if !bytes.Equal(data[n-int64(len(ipc.Magic)):], ipc.Magic) {
		return fbTable{}, n - int64(len(ipc.Magic)), errors.New("missing Arrow file magic at end (truncated?)")
	}
	flen := int64(binary.LittleEndian.Uint32(data[n-fileTrailerLen:]))
	off := n - fileTrailerLen - flen
	if flen == 0 || off < fileHeaderLen {
		return fbTable{}, n - fileTrailerLen, fmt.Errorf("footer length %d does not fit the file", flen)
	}
	t, err := fbRoot(data[off : n-fileTrailerLen])
	if err != nil {
		return fbTable{}, off, fmt.Errorf("footer: %w", err)
	}
	return t, off, nil
}

// footerBlocks returns the record batch blocks listed in the footer of the
// Arrow file data, and where the footer starts (for errors). arrow-go's
// FileReader does not expose the blocks.
func footerBlocks(data []byte) (blocks []block, footerOff int64, err error) {
	ft, footerOff, err := footer(data)
	if err != nil {
		return nil, footerOff, err
	}
	start, count, err := ft.vector(footerRecordBatches, blockSize)
	if err != nil {
		return nil, footerOff, fmt.Errorf("footer record batches: %w", err)
	}
	blocks = make([]block, count)
	for i := range blocks {
		e := ft.buf[start+int64(i)*blockSize:]
		b := block{
			off:  int64(binary.LittleEndian.Uint64(e)),
			meta: int64(int32(binary.LittleEndian.Uint32(e[8:]))),
			body: int64(binary.LittleEndian.Uint64(e[16:])),
		}
		if b.off < fileHeaderLen || b.off >= footerOff || b.meta < 8 || b.body < 0 ||
			b.meta > footerOff-b.off || b.body > footerOff-b.off-b.meta {
			return nil, footerOff, fmt.Errorf("footer block %d (offset %d, meta %d, body %d) lies outside the data", i, b.off, b.meta, b.body)
		}
		blocks[i] = b
	}
	return blocks, footerOff, nil
}

// checkSchema checks that the schema in the footer of data is a v1 object
// schema: the format metadata and the column names. Decoding then reads
// every batch against the v1 schema, so column types need no check here:
// a batch whose buffers do not fit them fails to decode.
//
// It reads the flatbuffer itself rather than through arrow-go, whose
// schema reader allocates whatever a corrupt vector length says.
func checkSchema(data []byte) error {
	ft, _, err := footer(data)
	if err != nil {
		return err
	}
	st, ok, err := ft.table(footerSchema)
	if err != nil || !ok {
		return fmt.Errorf("footer has no schema: %v", err)
	}
	md := map[string]string{}
	start, n, err := st.vector(schemaMetadata, 4)
	if err != nil {
		return fmt.Errorf("schema metadata: %w", err)
	}
	for i := range n {
		kv, err := st.element(start, i)
		if err != nil {
			return fmt.Errorf("schema metadata: %w", err)
		}
		k, err := kv.str(keyValueKey)
		if err != nil {
			return fmt.Errorf("schema metadata: %w", err)
		}
		v, err := kv.str(keyValueValue)
		if err != nil {
			return fmt.Errorf("schema metadata: %w", err)
		}
		md[k] = v
	}
	if v := md[metaFormat]; v != formatName {
		return fmt.Errorf("schema metadata %s is %q, want %q", metaFormat, v, formatName)
	}
	if v := md[metaFormatVersion]; v != strconv.Itoa(FormatVersion) {
		return fmt.Errorf("unsupported object format version %q", v)
	}
	start, n, err = st.vector(schemaFields, 4)
	if err != nil {
		return fmt.Errorf("schema fields: %w", err)
	}
	if n != numCols {
		return fmt.Errorf("schema has %d fields, want %d", n, numCols)
	}
	for i := range n {
		f, err := st.element(start, i)
		if err != nil {
			return fmt.Errorf("schema field %d: %w", i, err)
		}
		name, err := f.str(fieldName)
		if err != nil {
			return fmt.Errorf("schema field %d: %w", i, err)
		}
		if want := schema.Field(int(i)).Name; name != want {
			return fmt.Errorf("schema field %d is %q, want %q", i, name, want)
		}
	}
	return nil
}

// fbTable reads a flatbuffer table, checking every offset and length
// against the buffer. arrow-go's generated flatbuffer readers trust their
// input: they panic on a bad offset and allocate whatever a vector length
// says, which for corrupt input can exceed the machine's memory.
type fbTable struct {
	buf []byte
	pos int64
}

var errFlatbuffer = errors.New("malformed flatbuffer")

func (t fbTable) u32(at int64) (int64, error) {
	if at < 0 || at > int64(len(t.buf))-4 {
		return 0, errFlatbuffer
	}
	return int64(binary.LittleEndian.Uint32(t.buf[at:])), nil
}

// at returns the table that the uoffset at position p points to.
func (t fbTable) at(p int64) (fbTable, error) {
	u, err := t.u32(p)
	if err != nil {
		return fbTable{}, err
	}
	tt := fbTable{buf: t.buf, pos: p + u}
	_, err = tt.u32(tt.pos) // the table's vtable offset
	return tt, err
}

func fbRoot(buf []byte) (fbTable, error) {
	return fbTable{buf: buf}.at(0)
}

// field returns the position of the field in slot, or 0 if the table does
// not have it.
func (t fbTable) field(slot int) (int64, error) {
	so, err := t.u32(t.pos)
	if err != nil {
		return 0, err
	}
	vt := t.pos - int64(int32(uint32(so)))
	if vt < 0 || vt > int64(len(t.buf))-4 {
		return 0, errFlatbuffer
	}
	vtLen := int64(binary.LittleEndian.Uint16(t.buf[vt:]))
	if vtLen < 4 || vt+vtLen > int64(len(t.buf)) {
		return 0, errFlatbuffer
	}
	s := 4 + 2*int64(slot)
	if s+2 > vtLen {
		return 0, nil
	}
	off := int64(binary.LittleEndian.Uint16(t.buf[vt+s:]))
	if off == 0 {
		return 0, nil
	}
	return t.pos + off, nil
}

// table returns the sub-table in slot; ok is false if it is absent.
func (t fbTable) table(slot int) (sub fbTable, ok bool, err error) {
	p, err := t.field(slot)
	if err != nil || p == 0 {
		return fbTable{}, false, err
	}
	sub, err = t.at(p)
	return sub, err == nil, err
}

// vector returns where the elements of the vector in slot start and how
// many there are, checked to fit the buffer at elemSize bytes each. An
// absent vector is empty.
func (t fbTable) vector(slot int, elemSize int64) (start, n int64, err error) {
	p, err := t.field(slot)
	if err != nil || p == 0 {
		return 0, 0, err
	}
	u, err := t.u32(p)
	if err != nil {
		return 0, 0, err
	}
	n, err = t.u32(p + u)
	if err != nil {
		return 0, 0, err
	}
	start = p + u + 4
	if n > (int64(len(t.buf))-start)/elemSize {
		return 0, 0, errFlatbuffer
	}
	return start, n, nil
}

// element returns table i of a vector of tables that starts at start.
func (t fbTable) element(start, i int64) (fbTable, error) {
	return t.at(start + 4*i)
}

func (t fbTable) str(slot int) (string, error) {
	start, n, err := t.vector(slot, 1)
	if err != nil {
		return "", err
	}
	return string(t.buf[start : start+n]), nil
}

// decoded is one batch turned back into records.
type decoded struct {
	topic     string
	partition int32
	delta     int64 // offset_delta of the first row
	records   []Record
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
	if n*int(unsafe.Sizeof(Record{}))+(h1-h0)*int(unsafe.Sizeof(Header{})) > maxBatchMemory {
		return d, fmt.Errorf("batch of %d records and %d headers is too large to decode", n, h1-h0)
	}
	arena := make([]byte, 0, keys.size()+values.size()+hvals.span(h0, h1))
	hkeyStr := string(hkeys.data[hkeys.offs[h0]:hkeys.offs[h1]])
	hkeyBase := int(hkeys.offs[h0])
	headers := make([]Header, h1-h0)
	records := make([]Record, n)
	topicName := string(first)
	for i := range records {
		r := &records[i]
		r.Offset = deltas[i]
		r.Timestamp = timestamps[i]
		r.Key, arena = keys.copyTo(arena, i)
		r.Value, arena = values.copyTo(arena, i)
		a, b := int(hoffs[i]), int(hoffs[i+1])
		if b-a > MaxHeaders {
			return d, fmt.Errorf("row %d has %d headers, over the limit of %d", i, b-a, MaxHeaders)
		}
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
		if n := recordBytes(topicName, r); n > maxRecordBytes {
			return d, fmt.Errorf("row %d is %d bytes, over the limit of %d", i, n, maxRecordBytes)
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
