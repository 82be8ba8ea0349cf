package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/shalelog/shale/cache"
	"github.com/shalelog/shale/reader"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/manifest"
	"github.com/shalelog/shale/tier/tiertest"
)

// rowKey names a row of a data object.
type rowKey struct {
	object, topic string
	partition     int32
	delta         int64
}

// checkObjectsWithStockArrow opens every data object in the store with
// arrow-go's plain IPC file reader (no shale code) and checks that the rows
// it yields are the records shale serves at the offsets the manifest gives.
func checkObjectsWithStockArrow(t *testing.T, s tier.Store) {
	t.Helper()
	ctx := context.Background()
	rows := map[rowKey][]byte{}
	tmp := t.TempDir()
	var files []string
	objs, err := s.List(ctx, "data/", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatal("no data objects written")
	}
	for _, o := range objs {
		data, _, err := s.Get(ctx, o.Key, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(tmp, strings.ReplaceAll(o.Key, "/", "_"))
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		fr, err := ipc.NewFileReader(bytes.NewReader(data), ipc.WithAllocator(memory.NewGoAllocator()))
		if err != nil {
			t.Fatalf("stock Arrow reader cannot open %s: %v", o.Key, err)
		}
		for i := range fr.NumRecords() {
			rec, err := fr.RecordBatch(i)
			if err != nil {
				t.Fatalf("%s batch %d: %v", o.Key, i, err)
			}
			sc := rec.Schema()
			col := func(name string) arrow.Array {
				idx := sc.FieldIndices(name)
				if len(idx) != 1 {
					t.Fatalf("%s has no column %q (schema %s)", o.Key, name, sc)
				}
				return rec.Column(idx[0])
			}
			topics := col("topic").(*array.String)
			parts := col("partition").(*array.Int32)
			deltas := col("offset_delta").(*array.Int64)
			values := col("value").(*array.Binary)
			for r := range int(rec.NumRows()) {
				var v []byte
				if !values.IsNull(r) {
					v = bytes.Clone(values.Value(r))
				}
				rows[rowKey{o.Key, topics.Value(r), parts.Value(r), deltas.Value(r)}] = v
			}
		}
		fr.Close()
	}
	checkWithArrowJS(t, files, rows, func(file string) string {
		for _, o := range objs {
			if strings.HasSuffix(file, strings.ReplaceAll(o.Key, "/", "_")) {
				return o.Key
			}
		}
		return ""
	})
	l, err := manifest.Open(ctx, s, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	m := reader.New(l, s, nil, cache.New(0), reader.Options{})
	checked := 0
	for _, topic := range l.Topics() {
		for p := range topic.Partitions {
			_, end, _, err := l.Locate(ctx, topic.Name, p, 0, 1)
			if err != nil {
				t.Fatal(err)
			}
			for off := int64(0); off < end; {
				res, err := m.Read(ctx, topic.Name, p, off, 10000, 64<<20, 0)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range res.Records {
					_, _, es, err := l.Locate(ctx, topic.Name, p, r.Offset, 1)
					if err != nil || len(es) != 1 {
						t.Fatalf("locate %s/%d offset %d: %v", topic.Name, p, r.Offset, err)
					}
					e := es[0]
					v, ok := rows[rowKey{e.Object, topic.Name, p, r.Offset - e.Base}]
					if !ok || !bytes.Equal(v, r.Value) {
						t.Fatalf("%s/%d offset %d: stock Arrow reader gives %q (found %v) in %s, shale serves %q", topic.Name, p, r.Offset, v, ok, e.Object, r.Value)
					}
					checked++
				}
				off = res.Records[len(res.Records)-1].Offset + 1
			}
		}
	}
	if checked == 0 {
		t.Fatal("no committed records to check")
	}
	t.Logf("stock Arrow readers (arrow-go and Arrow JS): %d objects, %d committed records match", len(objs), checked)
}

// checkWithArrowJS reads the object files with Arrow JS and checks every
// row's value against what arrow-go read.
func checkWithArrowJS(t *testing.T, files []string, rows map[rowKey][]byte, keyOf func(file string) string) {
	t.Helper()
	read, ok := tiertest.ReadWithArrowJS(t, files)
	if !ok {
		t.Log("Arrow JS not installed (make arrowjs); checked with arrow-go only")
		return
	}
	seen := 0
	for _, got := range read {
		key := keyOf(got.File)
		for _, r := range got.Rows {
			var v []byte
			if r[5] != nil {
				v, _ = base64.StdEncoding.DecodeString(r[5].(string))
			}
			k := rowKey{key, r[0].(string), int32(r[1].(float64)), int64(r[2].(float64))}
			if want, ok := rows[k]; !ok || !bytes.Equal(want, v) {
				t.Fatalf("%s row %v: Arrow JS reads %q, arrow-go %q", key, r[:3], v, want)
			}
			seen++
		}
	}
	if seen != len(rows) {
		t.Fatalf("Arrow JS read %d rows; arrow-go %d", seen, len(rows))
	}
}
