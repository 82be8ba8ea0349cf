package object

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/shalelog/shale/tier/tiertest"
)

// TestArrowJSReadsObjects opens objects of every codec with Arrow JS, a
// stock reader that shares no code with the writer, and checks every row.
// testdata/arrowjs holds the pinned npm packages; `make test` installs them.
func TestArrowJSReadsObjects(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	parts := []Part{
		{Topic: "orders", Partition: 0, Records: genRecords(rng, 300, 64)},
		{Topic: "orders", Partition: 3, Records: genRecords(rng, 50, 4000)},
		{Topic: "ünïcode.topic", Partition: 1, Records: genRecords(rng, 7, 10)},
	}
	var files []string
	for _, c := range compressions {
		data, _ := encode(t, parts, c)
		f := filepath.Join(t.TempDir(), c.String()+".arrow")
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	read, ok := tiertest.ReadWithArrowJS(t, files)
	if !ok {
		t.Skip("Arrow JS check needs node and `make arrowjs` (make test does it)")
	}
	b64 := func(b []byte) *string {
		if b == nil {
			return nil
		}
		s := base64.StdEncoding.EncodeToString(b)
		return &s
	}
	var want [][]any
	for _, p := range parts {
		for i, r := range p.Records {
			headers := []any{}
			for _, h := range r.Headers {
				headers = append(headers, []any{h.Key, b64(h.Value)})
			}
			want = append(want, []any{p.Topic, p.Partition, i, r.Timestamp, b64(r.Key), b64(r.Value), headers})
		}
	}
	// Compare through JSON so that both sides have the same types.
	wantJSON, _ := json.Marshal(want)
	var wantRows []any
	json.Unmarshal(wantJSON, &wantRows)
	for _, got := range read {
		if len(got.Rows) != len(wantRows) {
			t.Fatalf("%s: Arrow JS read %d rows, want %d", got.File, len(got.Rows), len(wantRows))
		}
		for i := range wantRows {
			if !reflect.DeepEqual(any(got.Rows[i]), wantRows[i]) {
				t.Fatalf("%s row %d: Arrow JS read %v, want %v", filepath.Base(got.File), i, got.Rows[i], wantRows[i])
			}
		}
	}
	t.Logf("Arrow JS read %d rows from each of %s", len(wantRows), fmt.Sprint(compressions))
}
