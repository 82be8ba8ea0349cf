package object

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow/ipc"
)

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
