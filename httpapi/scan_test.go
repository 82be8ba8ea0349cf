package httpapi

import (
	"testing"

	"github.com/shalelog/shale/record"
)

// FuzzScanRecords: the scan that counts a binary body before it is
// decoded accepts exactly what the decoder accepts, and counts what it
// decodes, so a limit checked on the scan holds for the decoded records.
func FuzzScanRecords(f *testing.F) {
	for _, recs := range [][]record.Record{sampleRecords(4), {{}}, {{Headers: make([]record.Header, 3)}}} {
		var b []byte
		for i := range recs {
			b = record.Append(b, &recs[i])
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, h, keys, scanErr := scanRecords(b, 1<<30)
		recs, decErr := record.DecodeAll(b)
		if (scanErr == nil) != (decErr == nil) {
			t.Fatalf("scan: %v; decode: %v", scanErr, decErr)
		}
		if decErr != nil {
			return
		}
		var wantH int
		var wantKeys int64
		for _, r := range recs {
			wantH += len(r.Headers)
			for _, hd := range r.Headers {
				wantKeys += int64(len(hd.Key))
			}
		}
		if n != len(recs) || h != wantH || keys != wantKeys {
			t.Fatalf("scan counted %d records, %d headers, %d key bytes; decoded %d, %d, %d", n, h, keys, len(recs), wantH, wantKeys)
		}
	})
}
