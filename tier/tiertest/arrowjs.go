package tiertest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// ArrowJSFile is what Arrow JS read from one object file: per row
// [topic, partition, offset_delta, timestamp_ms, key_b64|null,
// value_b64|null, [[header_key, value_b64|null], ...]], as JSON decodes it.
type ArrowJSFile struct {
	File string  `json:"file"`
	Rows [][]any `json:"rows"`
}

// ReadWithArrowJS reads data object files with Arrow JS, a stock reader
// that shares no code with shale's writer (tier/object/testdata/arrowjs;
// `make arrowjs` installs it). Without node or the packages it fails the
// test under CI=true and otherwise returns ok=false.
func ReadWithArrowJS(t testing.TB, files []string) (out []ArrowJSFile, ok bool) {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(self), "..", "object", "testdata", "arrowjs")
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join(dir, "node_modules", "apache-arrow")); err != nil || serr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the Arrow JS check needs node and `make arrowjs`")
		}
		return nil, false
	}
	cmd := exec.Command(node, append([]string{filepath.Join(dir, "read.mjs")}, files...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	data, err := cmd.Output()
	if err != nil {
		t.Fatalf("Arrow JS could not read the objects: %v: %s", err, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 256<<20)
	for sc.Scan() {
		var f ArrowJSFile
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	if len(out) != len(files) {
		t.Fatalf("Arrow JS reported %d files of %d", len(out), len(files))
	}
	return out, true
}
