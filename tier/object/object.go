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
	"fmt"
	"hash/crc32"
	"strconv"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/shalelog/shale/record"
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
// limit for readers. Encode and the decoder both hold every record to
// record.Check, whose byte limit is half of it, so every batch Encode
// writes decodes within the bound, and whatever decodes can be written
// again (the compactor relies on it).
const maxBatchMemory = 256 << 20

// A compile-time check that record.MaxRecordBytes leaves room for the
// decoder's second copy: the constant overflows uint if it does not.
const _ = uint(maxBatchMemory - 2*record.MaxRecordBytes)

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
	Records   []record.Record
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
