package object

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
)

var compressions = []Compression{CompressionLZ4, CompressionZstd, CompressionNone}

// genRecords makes n records that cover the shapes the format must keep
// apart: nil and empty keys and values, arbitrary binary bytes, no
// headers, an empty header slice, and headers with nil, empty and binary
// values. valueSize is the typical value length.
func genRecords(rng *rand.Rand, n, valueSize int) []record.Record {
	recs := make([]record.Record, n)
	for i := range recs {
		r := &recs[i]
		r.Offset = rng.Int64() // ignored by Encode
		r.Timestamp = 1_700_000_000_000 + rng.Int64N(1_000_000) - 500_000
		switch i % 4 {
		case 0:
			r.Key = nil
		case 1:
			r.Key = []byte{}
		default:
			r.Key = randBytes(rng, 1+rng.IntN(32))
		}
		switch {
		case i%7 == 3:
			r.Value = nil
		case i%11 == 5:
			r.Value = []byte{}
		default:
			r.Value = randBytes(rng, valueSize/2+rng.IntN(valueSize+1))
		}
		switch i % 3 {
		case 0:
		case 1:
			r.Headers = []record.Header{}
		default:
			r.Headers = []record.Header{
				{Key: "trace-id", Value: randBytes(rng, 16)},
				{Key: "", Value: nil},
				{Key: "ключ", Value: []byte{}},
				{Key: "bin", Value: []byte{0, 0xff, 0, 0x80}},
			}[:1+rng.IntN(4)]
		}
	}
	return recs
}

// randBytes returns bytes that are partly compressible, partly random, and
// include 0x00 and 0xff.
func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		if rng.IntN(4) == 0 {
			b[i] = byte(rng.Uint32())
		} else {
			b[i] = "abcdef {}\":,0123456789"[rng.IntN(22)]
		}
	}
	return b
}

// want is what decoding p must return: Offset is the record's position,
// and an empty header slice comes back as nil (Arrow stores both as an
// empty list). Keys and values keep nil apart from empty.
func want(recs []record.Record, base int64) []record.Record {
	out := make([]record.Record, len(recs))
	for i, r := range recs {
		r.Offset = base + int64(i)
		if len(r.Headers) == 0 {
			r.Headers = nil
		}
		out[i] = r
	}
	return out
}

// equalRecords is reflect.DeepEqual, which tells a nil slice from an empty
// one, with a readable first difference.
func equalRecords(t *testing.T, what string, got, want []record.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d records, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("%s: record %d:\n got %#v\nwant %#v", what, i, got[i], want[i])
		}
	}
}

func encode(t *testing.T, parts []Part, c Compression) ([]byte, []PartIndex) {
	t.Helper()
	data, index, err := Encode(parts, c)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return data, index
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := map[string][]Part{
		"one record": {{Topic: "t", Partition: 0, Records: []record.Record{{Timestamp: 5, Key: []byte("k"), Value: []byte("v")}}}},
		"nil and empty": {{Topic: "nil-empty", Partition: 3, Records: []record.Record{
			{Key: nil, Value: nil},
			{Key: []byte{}, Value: []byte{}},
			{Key: nil, Value: []byte{}, Headers: []record.Header{{Key: "", Value: nil}}},
			{Key: []byte{}, Value: nil, Headers: []record.Header{{Key: "h", Value: []byte{}}}},
			{Timestamp: -1, Key: []byte{0}, Value: []byte{0xff}},
		}}},
		"mixed parts": {
			{Topic: "orders", Partition: 0, Records: genRecords(rng, 100, 64)},
			{Topic: "orders", Partition: 1, Records: genRecords(rng, 1, 64)},
			{Topic: "payments", Partition: 0, Records: genRecords(rng, 257, 200)},
			{Topic: "", Partition: 2147483647, Records: genRecords(rng, 9, 3)},
			{Topic: "ünïcødé/topic", Partition: -1, Records: genRecords(rng, 33, 1000)},
		},
		"split by bytes": {
			{Topic: "big", Partition: 7, Records: genRecords(rng, 3000, 1024)},
			{Topic: "small", Partition: 7, Records: genRecords(rng, 10, 10)},
		},
		"split by rows": {{Topic: "tiny", Partition: 1, Records: genRecords(rng, 2*MaxBatchRows+100, 2)}},
		"huge record": {{Topic: "huge", Partition: 0, Records: append(genRecords(rng, 3, 10),
			record.Record{Value: bytes.Repeat([]byte("x"), 3*MaxBatchBytes)},
			record.Record{Key: []byte("after")})}},
	}
	for name, parts := range cases {
		for _, c := range compressions {
			t.Run(name+"/"+c.String(), func(t *testing.T) {
				data, index := encode(t, parts, c)
				checkIndex(t, data, parts, index)

				got, err := Decode("obj", data)
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if len(got) != len(parts) {
					t.Fatalf("Decode returned %d parts, want %d", len(got), len(parts))
				}
				for i, p := range parts {
					if got[i].Topic != p.Topic || got[i].Partition != p.Partition {
						t.Fatalf("part %d is %s/%d, want %s/%d", i, got[i].Topic, got[i].Partition, p.Topic, p.Partition)
					}
					equalRecords(t, "Decode "+p.Topic, got[i].Records, want(p.Records, 0))
				}

				for i, pi := range index {
					for _, b := range pi.Batches {
						recs, err := DecodeBatch("obj", b, data[b.Off:b.Off+b.Len])
						if err != nil {
							t.Fatalf("DecodeBatch %+v: %v", b, err)
						}
						equalRecords(t, fmt.Sprintf("DecodeBatch %s delta %d", pi.Topic, b.Delta),
							recs, want(parts[i].Records[b.Delta:b.Delta+b.Rows], b.Delta))
					}
				}
			})
		}
	}
}

// checkIndex checks the index against the parts and the file layout:
// batches cover each part's records in order within the batch limits,
// and their ranges tile the file between the schema message and the
// footer, each starting with an IPC message prefix.
func checkIndex(t *testing.T, data []byte, parts []Part, index []PartIndex) {
	t.Helper()
	if len(index) != len(parts) {
		t.Fatalf("index has %d parts, want %d", len(index), len(parts))
	}
	blocks, footer, err := footerBlocks(data)
	if err != nil {
		t.Fatalf("footerBlocks: %v", err)
	}
	next := int64(-1)
	nb := 0
	for i, pi := range index {
		p := parts[i]
		if pi.Topic != p.Topic || pi.Partition != p.Partition || pi.Count != int64(len(p.Records)) {
			t.Fatalf("index %d is %s/%d with %d records, want %s/%d with %d", i, pi.Topic, pi.Partition, pi.Count, p.Topic, p.Partition, len(p.Records))
		}
		lo, hi := p.Records[0].Timestamp, p.Records[0].Timestamp
		for _, r := range p.Records {
			lo, hi = min(lo, r.Timestamp), max(hi, r.Timestamp)
		}
		if pi.MinTimestamp != lo || pi.MaxTimestamp != hi {
			t.Errorf("index %d timestamps %d..%d, want %d..%d", i, pi.MinTimestamp, pi.MaxTimestamp, lo, hi)
		}
		var delta, size int64
		for j, b := range pi.Batches {
			if b.Delta != delta || b.Rows <= 0 || b.Rows > MaxBatchRows {
				t.Fatalf("index %d batch %d: %+v, want delta %d and 1..%d rows", i, j, b, delta, MaxBatchRows)
			}
			bytes := 0
			for _, r := range p.Records[b.Delta : b.Delta+b.Rows] {
				bytes += recordBytes(p.Topic, &r)
			}
			if b.Rows > 1 && bytes > MaxBatchBytes {
				t.Errorf("index %d batch %d holds %d bytes of records, over MaxBatchBytes", i, j, bytes)
			}
			if next >= 0 && b.Off != next {
				t.Errorf("batch at %d, want it right after the previous one at %d", b.Off, next)
			}
			if blk := blocks[nb]; b.Off != blk.off || b.Len != blk.len() {
				t.Errorf("batch %+v, footer block %+v", b, blk)
			}
			if binary.LittleEndian.Uint32(data[b.Off:]) != 0xFFFFFFFF {
				t.Errorf("batch at %d does not start with an IPC continuation marker", b.Off)
			}
			if b.CRC != crc32.Checksum(data[b.Off:b.Off+b.Len], crc32.MakeTable(crc32.Castagnoli)) {
				t.Errorf("batch %+v has a wrong CRC", b)
			}
			next = b.Off + b.Len
			delta += b.Rows
			size += b.Len
			nb++
		}
		if delta != pi.Count || size != pi.Bytes {
			t.Errorf("index %d: batches hold %d rows in %d bytes, index says %d in %d", i, delta, size, pi.Count, pi.Bytes)
		}
	}
	if nb != len(blocks) {
		t.Fatalf("index has %d batches, footer %d", nb, len(blocks))
	}
	// The file's stream ends with an end-of-stream marker before the footer.
	if nb > 0 && next+8 != footer {
		t.Errorf("last batch ends at %d, footer starts at %d", next, footer)
	}
}

func TestSplitting(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cases := map[string]struct {
		recs []record.Record
		rows []int64
	}{
		"rows": {
			recs: make([]record.Record, 2*MaxBatchRows+5),
			rows: []int64{MaxBatchRows, MaxBatchRows, 5},
		},
		"bytes": {
			// 1000 records of 1000 value bytes plus a 1-byte topic fit
			// 1047 to a MiB.
			recs: func() []record.Record {
				r := make([]record.Record, 2500)
				for i := range r {
					r[i].Value = randBytes(rng, 1000)
				}
				return r
			}(),
			rows: []int64{1047, 1047, 406},
		},
		"big record alone": {
			recs: []record.Record{{Value: []byte("a")}, {Value: make([]byte, MaxBatchBytes+1)}, {Value: []byte("b")}},
			rows: []int64{1, 1, 1},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, index := encode(t, []Part{{Topic: "t", Records: tc.recs}}, CompressionLZ4)
			var rows []int64
			for _, b := range index[0].Batches {
				rows = append(rows, b.Rows)
			}
			if !reflect.DeepEqual(rows, tc.rows) {
				t.Fatalf("batch rows %v, want %v", rows, tc.rows)
			}
		})
	}
}

func TestEncodeParts(t *testing.T) {
	one := []record.Record{{Value: []byte("v")}}
	t.Run("empty parts write nothing", func(t *testing.T) {
		data, index := encode(t, []Part{{Topic: "a"}, {Topic: "b", Records: one}, {Topic: "c", Records: []record.Record{}}}, CompressionLZ4)
		wantIndex := []PartIndex{
			{Topic: "a"},
			{Topic: "b", Count: 1, Bytes: index[1].Bytes, Batches: index[1].Batches},
			{Topic: "c"},
		}
		if !reflect.DeepEqual(index, wantIndex) || len(index[1].Batches) != 1 {
			t.Fatalf("index %+v, want %+v with one batch for b", index, wantIndex)
		}
		parts, err := Decode("obj", data)
		if err != nil || len(parts) != 1 || parts[0].Topic != "b" {
			t.Fatalf("Decode = %+v, %v; want only part b", parts, err)
		}
	})
	t.Run("no parts", func(t *testing.T) {
		data, index := encode(t, nil, CompressionLZ4)
		if len(index) != 0 {
			t.Fatalf("index %+v, want none", index)
		}
		parts, err := Decode("obj", data)
		if err != nil || len(parts) != 0 {
			t.Fatalf("Decode = %+v, %v; want no parts", parts, err)
		}
		fr, err := ipc.NewFileReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("stock reader: %v", err)
		}
		defer fr.Close()
		if fr.NumRecords() != 0 {
			t.Fatalf("stock reader sees %d batches, want 0", fr.NumRecords())
		}
	})
	t.Run("duplicate part", func(t *testing.T) {
		_, _, err := Encode([]Part{{Topic: "a", Partition: 1, Records: one}, {Topic: "b", Records: one}, {Topic: "a", Partition: 1, Records: one}}, CompressionLZ4)
		if err == nil || !strings.Contains(err.Error(), "duplicate part a/1") {
			t.Fatalf("Encode = %v, want a duplicate part error", err)
		}
	})
	t.Run("unknown compression", func(t *testing.T) {
		if _, _, err := Encode([]Part{{Topic: "a", Records: one}}, Compression(9)); err == nil {
			t.Fatal("Encode with Compression(9) succeeded")
		}
	})
	t.Run("too many headers", func(t *testing.T) {
		r := record.Record{Headers: make([]record.Header, record.MaxHeaders+1)}
		if _, _, err := Encode([]Part{{Topic: "a", Records: []record.Record{r}}}, CompressionLZ4); err == nil {
			t.Fatal("Encode of a record with too many headers succeeded")
		}
	})
}

// wantCorrupt checks that err is a *tier.CorruptError for key at offset off
// (off < 0: any offset).
func wantCorrupt(t *testing.T, err error, key string, off int64) {
	t.Helper()
	var ce *tier.CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want *tier.CorruptError", err, err)
	}
	if ce.Key != key || (off >= 0 && ce.Offset != off) {
		t.Fatalf("tier.CorruptError for %s at %d, want %s at %d", ce.Key, ce.Offset, key, off)
	}
	if !strings.HasPrefix(ce.Error(), fmt.Sprintf("corrupt object %s at byte %d: ", key, ce.Offset)) || errors.Unwrap(ce) != ce.Err {
		t.Fatalf("tier.CorruptError formats as %q", ce.Error())
	}
}

func smallObject(t *testing.T, c Compression) ([]byte, []PartIndex) {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	return encode(t, []Part{
		{Topic: "a", Partition: 0, Records: genRecords(rng, 20, 40)},
		{Topic: "b", Partition: 1, Records: genRecords(rng, 5, 10)},
	}, c)
}

func TestDecodeBatchBitFlip(t *testing.T) {
	for _, c := range compressions {
		t.Run(c.String(), func(t *testing.T) {
			data, index := smallObject(t, c)
			for _, pi := range index {
				for _, b := range pi.Batches {
					for i := range b.Len {
						for bit := range 8 {
							buf := bytes.Clone(data[b.Off : b.Off+b.Len])
							buf[i] ^= 1 << bit
							recs, err := DecodeBatch("data/obj-1", b, buf)
							if recs != nil {
								t.Fatalf("flip of bit %d at byte %d returned records", bit, b.Off+i)
							}
							wantCorrupt(t, err, "data/obj-1", b.Off)
						}
					}
				}
			}
		})
	}
}

func TestDecodeBatchMismatch(t *testing.T) {
	data, index := smallObject(t, CompressionLZ4)
	b := index[0].Batches[0]
	good := data[b.Off : b.Off+b.Len]
	other := index[1].Batches[0]
	cases := map[string]struct {
		b    Batch
		data []byte
	}{
		"truncated":      {b, good[:len(good)-1]},
		"half":           {b, good[:len(good)/2]},
		"empty":          {b, nil},
		"extra byte":     {b, append(bytes.Clone(good), 0)},
		"wrong crc":      {Batch{Delta: b.Delta, Rows: b.Rows, Off: b.Off, Len: b.Len, CRC: b.CRC + 1}, good},
		"wrong delta":    {Batch{Delta: b.Delta + 1, Rows: b.Rows, Off: b.Off, Len: b.Len, CRC: b.CRC}, good},
		"wrong rows":     {Batch{Delta: b.Delta, Rows: b.Rows + 1, Off: b.Off, Len: b.Len, CRC: b.CRC}, good},
		"other range":    {b, data[other.Off : other.Off+other.Len]},
		"whole object":   {Batch{Len: int64(len(data)), CRC: crc32.Checksum(data, castagnoli)}, data},
		"schema message": {Batch{Off: 8, Len: b.Off - 8, CRC: crc32.Checksum(data[8:b.Off], castagnoli)}, data[8:b.Off]},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			recs, err := DecodeBatch("k", tc.b, tc.data)
			if recs != nil {
				t.Fatalf("returned %d records", len(recs))
			}
			wantCorrupt(t, err, "k", tc.b.Off)
		})
	}
}

func TestDecodeTruncated(t *testing.T) {
	for _, c := range compressions {
		t.Run(c.String(), func(t *testing.T) {
			data, _ := smallObject(t, c)
			for n := range len(data) {
				parts, err := Decode("data/obj-2", data[:n])
				if parts != nil {
					t.Fatalf("Decode of %d of %d bytes returned parts", n, len(data))
				}
				wantCorrupt(t, err, "data/obj-2", -1)
			}
		})
	}
}

// TestDecodeCorrupt flips a bit in every byte of a small object. Flips in value bytes
// of an uncompressed batch cannot be detected without the index's CRCs,
// but Decode must never panic, and must report the other flips it notices
// as corruption.
func TestDecodeCorrupt(t *testing.T) {
	for _, c := range compressions {
		t.Run(c.String(), func(t *testing.T) {
			data, _ := smallObject(t, c)
			detected := 0
			for i := range data {
				buf := bytes.Clone(data)
				buf[i] ^= 1 << (i % 8)
				parts, err := Decode("k", buf)
				if err != nil {
					if parts != nil {
						t.Fatal("Decode returned parts and an error")
					}
					wantCorrupt(t, err, "k", -1)
					detected++
				}
			}
			t.Logf("%d of %d bit flips detected without CRCs", detected, len(data))
		})
	}
}

func TestDecodeRejectsOtherFiles(t *testing.T) {
	write := func(sc *arrow.Schema) []byte {
		var buf bytes.Buffer
		w, err := ipc.NewFileWriter(&buf, ipc.WithSchema(sc))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	withMeta := func(k, v []string) *arrow.Schema {
		md := arrow.NewMetadata(k, v)
		return arrow.NewSchema(schema.Fields(), &md)
	}
	cases := map[string][]byte{
		"version 2":      write(withMeta([]string{metaFormat, metaFormatVersion}, []string{formatName, "2"})),
		"no metadata":    write(arrow.NewSchema(schema.Fields(), nil)),
		"other format":   write(withMeta([]string{metaFormat, metaFormatVersion}, []string{"segment", "1"})),
		"other schema":   write(arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int8}}, func() *arrow.Metadata { md := schema.Metadata(); return &md }())),
		"arrow stream":   func() []byte { b := encodeStream(t); return b }(),
		"not arrow":      []byte("PAR1 definitely not an arrow file PAR1"),
		"only the magic": []byte("ARROW1\x00\x00ARROW1"),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Decode("k", data)
			wantCorrupt(t, err, "k", -1)
		})
	}
}

func encodeStream(t *testing.T) []byte {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestStockReader reads objects with arrow-go's plain file reader and no
// shale code, as pyarrow or DuckDB would, and checks the schema, the
// one-part-per-batch rule and every value.
func TestStockReader(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	parts := []Part{
		{Topic: "orders", Partition: 4, Records: genRecords(rng, 1500, 1024)},
		{Topic: "users", Partition: 0, Records: genRecords(rng, 50, 10)},
	}
	for _, c := range compressions {
		t.Run(c.String(), func(t *testing.T) {
			data, _ := encode(t, parts, c)
			fr, err := ipc.NewFileReader(bytes.NewReader(data), ipc.WithAllocator(memory.NewGoAllocator()))
			if err != nil {
				t.Fatalf("NewFileReader: %v", err)
			}
			defer fr.Close()

			sc := fr.Schema()
			wantFields := []string{
				"topic: type=utf8",
				"partition: type=int32",
				"offset_delta: type=int64",
				"timestamp: type=timestamp[ms, tz=UTC]",
				"key: type=binary, nullable",
				"value: type=binary, nullable",
				"headers: type=list<item: struct<key: utf8, value: binary nullable>>",
			}
			for i, f := range sc.Fields() {
				if got := f.String(); got != wantFields[i] {
					t.Errorf("field %d is %q, want %q", i, got, wantFields[i])
				}
			}
			if v, _ := sc.Metadata().GetValue("shale.format"); v != "object" {
				t.Errorf("shale.format = %q", v)
			}
			if v, _ := sc.Metadata().GetValue("shale.format_version"); v != "1" {
				t.Errorf("shale.format_version = %q", v)
			}

			p, next := 0, 0
			for i := range fr.NumRecords() {
				rec, err := fr.RecordBatch(i)
				if err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
				for _, col := range rec.Columns() {
					if v, ok := col.(interface{ ValidateFull() error }); ok {
						if err := v.ValidateFull(); err != nil {
							t.Fatalf("batch %d: %v", i, err)
						}
					}
				}
				if next == len(parts[p].Records) {
					p, next = p+1, 0
				}
				part := parts[p]
				topic := rec.Column(0).(*array.String)
				partition := rec.Column(1).(*array.Int32)
				delta := rec.Column(2).(*array.Int64)
				ts := rec.Column(3).(*array.Timestamp)
				key := rec.Column(4).(*array.Binary)
				value := rec.Column(5).(*array.Binary)
				headers := rec.Column(6).(*array.List)
				hs := headers.ListValues().(*array.Struct)
				hkey := hs.Field(0).(*array.String)
				hval := hs.Field(1).(*array.Binary)
				for row := range int(rec.NumRows()) {
					r := part.Records[next]
					if topic.Value(row) != part.Topic || partition.Value(row) != part.Partition || delta.Value(row) != int64(next) {
						t.Fatalf("batch %d row %d is %s/%d delta %d, want %s/%d delta %d", i, row,
							topic.Value(row), partition.Value(row), delta.Value(row), part.Topic, part.Partition, next)
					}
					if int64(ts.Value(row)) != r.Timestamp {
						t.Fatalf("batch %d row %d timestamp %d, want %d", i, row, ts.Value(row), r.Timestamp)
					}
					checkBinary(t, key, row, r.Key)
					checkBinary(t, value, row, r.Value)
					if headers.IsNull(row) {
						t.Fatalf("batch %d row %d: null headers", i, row)
					}
					a, b := headers.ValueOffsets(row)
					if int(b-a) != len(r.Headers) {
						t.Fatalf("batch %d row %d has %d headers, want %d", i, row, b-a, len(r.Headers))
					}
					for j, h := range r.Headers {
						if hkey.Value(int(a)+j) != h.Key {
							t.Fatalf("batch %d row %d header %d key %q, want %q", i, row, j, hkey.Value(int(a)+j), h.Key)
						}
						checkBinary(t, hval, int(a)+j, h.Value)
					}
					next++
				}
			}
			if p != len(parts)-1 || next != len(parts[p].Records) {
				t.Fatalf("stock reader stopped at part %d record %d", p, next)
			}
		})
	}
}

func checkBinary(t *testing.T, a *array.Binary, i int, want []byte) {
	t.Helper()
	if want == nil {
		if !a.IsNull(i) {
			t.Fatalf("row %d: got %q, want null", i, a.Value(i))
		}
		return
	}
	if a.IsNull(i) || !bytes.Equal(a.Value(i), want) {
		t.Fatalf("row %d: got %q (null %v), want %q", i, a.Value(i), a.IsNull(i), want)
	}
}

// TestDecodeStockWriter decodes a file that arrow-go's own builders and
// writer produced with the v1 schema, so Decode does not depend on quirks
// of Encode's buffer layout (validity bitmaps present without nulls,
// builder padding, a slice offset).
func TestDecodeStockWriter(t *testing.T) {
	mem := memory.NewGoAllocator()
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	recs := []record.Record{
		{Timestamp: 10, Key: []byte("a"), Value: []byte("1"), Headers: []record.Header{{Key: "h", Value: nil}, {Key: "i", Value: []byte{}}}},
		{Timestamp: 20, Key: nil, Value: []byte{}},
		{Timestamp: 30, Key: []byte{}, Value: nil, Headers: []record.Header{{Key: "j", Value: []byte{1}}}},
	}
	for i, r := range recs {
		b.Field(colTopic).(*array.StringBuilder).Append("t")
		b.Field(colPartition).(*array.Int32Builder).Append(2)
		b.Field(colOffsetDelta).(*array.Int64Builder).Append(int64(i))
		b.Field(colTimestamp).(*array.TimestampBuilder).Append(arrow.Timestamp(r.Timestamp))
		for _, col := range []struct {
			b *array.BinaryBuilder
			v []byte
		}{{b.Field(colKey).(*array.BinaryBuilder), r.Key}, {b.Field(colValue).(*array.BinaryBuilder), r.Value}} {
			if col.v == nil {
				col.b.AppendNull()
			} else {
				col.b.Append(col.v)
			}
		}
		lb := b.Field(colHeaders).(*array.ListBuilder)
		lb.Append(true)
		sb := lb.ValueBuilder().(*array.StructBuilder)
		for _, h := range r.Headers {
			sb.Append(true)
			sb.FieldBuilder(0).(*array.StringBuilder).Append(h.Key)
			if h.Value == nil {
				sb.FieldBuilder(1).(*array.BinaryBuilder).AppendNull()
			} else {
				sb.FieldBuilder(1).(*array.BinaryBuilder).Append(h.Value)
			}
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()

	var buf bytes.Buffer
	w, err := ipc.NewFileWriter(&buf, ipc.WithSchema(schema), ipc.WithZstd())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []arrow.RecordBatch{rec.NewSlice(0, 1), rec.NewSlice(1, 3)} {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
		r.Release()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	parts, err := Decode("stock", buf.Bytes())
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if len(parts) != 1 || parts[0].Topic != "t" || parts[0].Partition != 2 {
		t.Fatalf("Decode = %+v, want one part t/2", parts)
	}
	equalRecords(t, "Decode", parts[0].Records, want(recs, 0))
}

func TestCompressionSavesSpace(t *testing.T) {
	text := make([]record.Record, 2000)
	noise := make([]record.Record, 2000)
	rng := rand.New(rand.NewPCG(9, 10))
	for i := range text {
		text[i].Value = fmt.Appendf(nil, `{"id":%d,"user":"user-%d","status":"ok","items":[1,2,3],"pad":"%s"}`, i, i%97, strings.Repeat("x", 900))
		noise[i].Value = make([]byte, 1000)
		for j := range noise[i].Value {
			noise[i].Value[j] = byte(rng.Uint32())
		}
	}
	sizes := map[Compression][2]int{}
	for _, c := range compressions {
		a, _ := encode(t, []Part{{Topic: "text", Records: text}}, c)
		b, _ := encode(t, []Part{{Topic: "noise", Records: noise}}, c)
		sizes[c] = [2]int{len(a), len(b)}
	}
	t.Logf("object sizes [text noise]: %v", sizes)
	for _, c := range []Compression{CompressionLZ4, CompressionZstd} {
		if sizes[c][0] > sizes[CompressionNone][0]/4 {
			t.Errorf("%v: text object is %d bytes, raw %d", c, sizes[c][0], sizes[CompressionNone][0])
		}
		// Incompressible buffers are stored raw, not grown by the codec.
		if sizes[c][1] > sizes[CompressionNone][1]+1024 {
			t.Errorf("%v: noise object is %d bytes, raw %d", c, sizes[c][1], sizes[CompressionNone][1])
		}
	}
}

func TestBoundedAllocator(t *testing.T) {
	a := newBoundedAllocator()
	b := a.Allocate(maxBatchMemory - 10)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("allocation over the bound did not panic")
			}
		}()
		a.Allocate(11)
	}()
	a.Free(b)
	a.Free(a.Reallocate(100, a.Allocate(10)))
	if a.left != maxBatchMemory {
		t.Fatalf("allocator has %d bytes left, want %d", a.left, maxBatchMemory)
	}
}

// benchParts makes a roll of about size bytes of keys and values spread
// over n partitions: 16-byte keys and 1 KiB JSON-like values of repeated
// field names, words from a small vocabulary and random numbers, which
// LZ4 compresses about 3x, like typical event payloads. Every fourth
// record has a header.
func benchParts(size, n int) ([]Part, int) {
	rng := rand.New(rand.NewPCG(11, 12))
	words := strings.Fields("alpha beta gamma delta click view cart checkout login logout search " +
		"mobile desktop tablet chrome firefox safari eu-west us-east ap-south ok error retry timeout " +
		"premium free trial")
	parts := make([]Part, n)
	for i := range parts {
		parts[i] = Part{Topic: "bench-topic", Partition: int32(i)}
	}
	total := 0
	for i := 0; total < size; i++ {
		v := fmt.Appendf(make([]byte, 0, 1100), `{"seq":%d,"user":"u%06d","session":"%016x","amount":%d.%02d,"events":[`,
			i, rng.IntN(1_000_000), rng.Uint64(), rng.IntN(10000), rng.IntN(100))
		for len(v) < 1000 {
			v = fmt.Appendf(v, `{"type":"%s","where":"%s","ms":%d},`, words[rng.IntN(len(words))], words[rng.IntN(len(words))], rng.IntN(100000))
		}
		v = append(v[:len(v)-1], ']', '}')
		r := record.Record{Timestamp: 1_700_000_000_000 + int64(i), Key: fmt.Appendf(nil, "key-%012d", i), Value: v}
		if i%4 == 0 {
			r.Headers = []record.Header{{Key: "trace", Value: fmt.Appendf(nil, "%016x", rng.Uint64())}}
		}
		p := &parts[rng.IntN(n)]
		p.Records = append(p.Records, r)
		total += len(r.Key) + len(r.Value)
	}
	return parts, total
}

func recordCount(parts []Part) int {
	n := 0
	for _, p := range parts {
		n += len(p.Records)
	}
	return n
}

func BenchmarkEncode(b *testing.B) {
	for _, n := range []int{8, 512} {
		parts, total := benchParts(16<<20, n)
		for _, c := range compressions {
			b.Run(fmt.Sprintf("partitions=%d/%v", n, c), func(b *testing.B) {
				b.SetBytes(int64(total))
				b.ReportAllocs()
				var size int
				for b.Loop() {
					data, _, err := Encode(parts, c)
					if err != nil {
						b.Fatal(err)
					}
					size = len(data)
				}
				b.ReportMetric(float64(recordCount(parts)*b.N)/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(float64(size)/float64(total), "ratio")
			})
		}
	}
}

func BenchmarkDecodeBatch(b *testing.B) {
	parts, total := benchParts(16<<20, 8)
	for _, c := range compressions {
		data, index, err := Encode(parts, c)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(int64(total))
			b.ReportAllocs()
			for b.Loop() {
				for _, pi := range index {
					for _, bt := range pi.Batches {
						if _, err := DecodeBatch("bench", bt, data[bt.Off:bt.Off+bt.Len]); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			b.ReportMetric(float64(recordCount(parts)*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
