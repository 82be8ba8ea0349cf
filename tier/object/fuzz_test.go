package object

import (
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
)

// seedParts returns small objects' worth of parts, varied enough that the
// fuzzers start from every column shape: nulls, empty values, headers, two
// parts, several batches of one part.
func seedParts() [][]Part {
	rng := rand.New(rand.NewPCG(13, 14))
	return [][]Part{
		{{Topic: "t", Partition: 0, Records: []record.Record{{Timestamp: 1, Key: []byte("k"), Value: []byte("v")}}}},
		{{Topic: "a", Partition: 1, Records: genRecords(rng, 6, 8)}, {Topic: "b", Partition: 2, Records: genRecords(rng, 3, 4)}},
		{{Topic: "nil", Partition: 0, Records: []record.Record{{}, {Key: []byte{}, Value: []byte{}, Headers: []record.Header{{}}}}}},
		// Two batches of one part.
		{{Topic: "s", Partition: 3, Records: []record.Record{{Value: make([]byte, MaxBatchBytes)}, {Value: []byte("x")}}}},
	}
}

func FuzzDecodeRecords(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	for _, parts := range seedParts() {
		for _, p := range parts {
			var b []byte
			for i := range p.Records {
				if len(p.Records[i].Value) > 64 {
					continue
				}
				b = record.Append(b, &p.Records[i])
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := record.DecodeAll(data)
		if err != nil {
			if !errors.Is(err, record.ErrMalformed) {
				t.Fatalf("error %v does not wrap record.ErrMalformed", err)
			}
			return
		}
		var enc []byte
		for i := range recs {
			enc = record.Append(enc, &recs[i])
		}
		// The input may use longer varints than AppendRecord writes.
		if len(enc) > len(data) {
			t.Fatalf("re-encoding %d bytes gave %d", len(data), len(enc))
		}
		again, err := record.DecodeAll(enc)
		if err != nil {
			t.Fatalf("decode re-encoded records: %v", err)
		}
		if !reflect.DeepEqual(again, recs) {
			t.Fatalf("round trip changed records:\n got %#v\nwant %#v", again, recs)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte{}, int64(0), int64(0))
	for _, parts := range seedParts() {
		for _, c := range compressions {
			data, index, err := Encode(parts, c)
			if err != nil {
				f.Fatal(err)
			}
			for _, pi := range index {
				for _, b := range pi.Batches {
					if b.Len < 64<<10 {
						f.Add(data[b.Off:b.Off+b.Len], b.Delta, b.Rows)
					}
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, delta, rows int64) {
		// The CRC is computed over the fuzzed bytes so that decoding, not
		// just the checksum, is what gets exercised.
		b := Batch{Delta: delta, Rows: rows, Off: 4096, Len: int64(len(data)), CRC: crc32.Checksum(data, castagnoli)}
		recs, err := DecodeBatch("fuzz", b, data)
		if err != nil {
			if recs != nil {
				t.Fatal("DecodeBatch returned records and an error")
			}
			var ce *tier.CorruptError
			if !errors.As(err, &ce) || ce.Key != "fuzz" || ce.Offset != 4096 {
				t.Fatalf("error %v is not a tier.CorruptError for fuzz at 4096", err)
			}
			return
		}
		if int64(len(recs)) != rows {
			t.Fatalf("%d records, index says %d", len(recs), rows)
		}
		for i, r := range recs {
			if r.Offset != delta+int64(i) {
				t.Fatalf("record %d has offset %d, want %d", i, r.Offset, delta+int64(i))
			}
		}
		// Whatever decodes must encode again and decode to the same records.
		d, err := decodeMessage(data)
		if err != nil {
			t.Fatalf("decodeMessage fails where DecodeBatch succeeded: %v", err)
		}
		reencode(t, []Part{{Topic: d.topic, Partition: d.partition, Records: recs}})
	})
}

func FuzzDecode(f *testing.F) {
	for _, parts := range seedParts() {
		for _, c := range compressions {
			data, _, err := Encode(parts, c)
			if err != nil {
				f.Fatal(err)
			}
			if len(data) < 64<<10 {
				f.Add(data)
			}
		}
	}
	empty, _, err := Encode(nil, CompressionLZ4)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(empty)
	f.Fuzz(func(t *testing.T, data []byte) {
		parts, err := Decode("fuzz", data)
		if err != nil {
			if parts != nil {
				t.Fatal("Decode returned parts and an error")
			}
			var ce *tier.CorruptError
			if !errors.As(err, &ce) || ce.Key != "fuzz" {
				t.Fatalf("error %v is not a tier.CorruptError for fuzz", err)
			}
			return
		}
		reencode(t, parts)
	})
}

// reencode checks that decoded parts encode again and decode to
// themselves, with offsets counted from 0 within each part.
func reencode(t *testing.T, parts []Part) {
	t.Helper()
	data, _, err := Encode(parts, CompressionNone)
	if err != nil {
		t.Fatalf("re-encode decoded parts: %v", err)
	}
	got, err := Decode("again", data)
	if err != nil {
		t.Fatalf("decode re-encoded parts: %v", err)
	}
	if len(got) != len(parts) {
		t.Fatalf("re-encoded %d parts, decoded %d", len(parts), len(got))
	}
	for i := range parts {
		if got[i].Topic != parts[i].Topic || got[i].Partition != parts[i].Partition {
			t.Fatalf("part %d: %s/%d became %s/%d", i, parts[i].Topic, parts[i].Partition, got[i].Topic, got[i].Partition)
		}
		equalRecords(t, "re-encoded "+parts[i].Topic, got[i].Records, want(parts[i].Records, 0))
	}
}
