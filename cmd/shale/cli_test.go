package main

// Regression tests of the command line as a user meets it: batching,
// resume lines, offsets, times, formats, help, environment scoping, exit
// statuses, the hot directory, signals and reconnects.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shalelog/shale/httpapi"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/manifest"
	"github.com/shalelog/shale/tier/tiertest"
)

// runIn runs the shale command in this process.
func runIn(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

// fakeShale answers like a shale server with topic t of one partition:
// produce succeeds okRequests times, then answers 503.
func fakeShale(t *testing.T, okRequests int) *httptest.Server {
	var n int
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/topics/t", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(httpapi.TopicDescription{Topic: manifest.Topic{Name: "t", Partitions: 1}, Parts: []manifest.PartitionInfo{{}}})
	})
	var next int64
	mux.HandleFunc("POST /v1/topics/t/records", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		recs, _ := record.DecodeAll(body)
		w.Header().Set("Content-Type", "application/json")
		if n++; n > okRequests {
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(httpapi.Error{Error: "object store unavailable"})
			return
		}
		res := httpapi.ProduceResult{Partition: 0, FirstOffset: next, LastOffset: next + int64(len(recs)) - 1, Records: len(recs)}
		next += int64(len(recs))
		json.NewEncoder(w).Encode(httpapi.ProduceResponse{Results: []httpapi.ProduceResult{res}})
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func numbers(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintln(&b, i)
	}
	return b.String()
}

// TestProduceFailureSaysWhereToResume: a produce that fails part way says
// how many records were acknowledged and the first input line that was
// not, and exits 1.
func TestProduceFailureSaysWhereToResume(t *testing.T) {
	srv := fakeShale(t, 2)
	_, errOut, code := runIn(t, numbers(1, 100), "produce", "t", "--server", srv.URL, "--batch-records", "10")
	if code != 1 || !strings.Contains(errOut, "object store unavailable") ||
		!strings.Contains(errOut, "20 records acknowledged; input line 21 is the first not acknowledged") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	// The JSON summary says the same for programs.
	out, _, code := runIn(t, numbers(1, 100), "produce", "t", "--server", fakeShale(t, 3).URL, "--batch-records", "10", "--output", "json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var sum summaryJSON
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil || code != 1 || sum.Records != 30 || sum.FirstUnacked != 31 || len(lines) != 4 {
		t.Fatalf("exit %d, output %q (%v)", code, out, err)
	}
}

// TestForeignServer: a web server that is not shale is reported as such,
// not by printing its page.
func TestForeignServer(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "<!DOCTYPE html><html><body><h1>Not Found</h1></body></html>")
	}))
	defer web.Close()
	for _, args := range [][]string{{"topic", "list"}, {"consume", "t"}, {"produce", "t"}} {
		_, errOut, code := runIn(t, "v\n", append(args, "--server", web.URL)...)
		if code != 1 || !strings.Contains(errOut, web.URL+" is not a shale server") || strings.Contains(errOut, "Not Found") {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// TestClientTimeout: every client command gives up after --timeout on a
// server that accepts the connection and never answers.
func TestClientTimeout(t *testing.T) {
	stop := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer hang.Close()
	defer close(stop)
	for _, args := range [][]string{{"topic", "list"}, {"topic", "create", "x"}, {"topic", "describe", "x"}, {"topic", "delete", "x"}, {"consume", "t"}, {"produce", "t"}} {
		start := time.Now()
		_, errOut, code := runIn(t, "v\n", append(args, "--server", hang.URL, "--timeout", "200ms")...)
		if code != 1 || !strings.Contains(errOut, "no answer") || !strings.Contains(errOut, "--timeout 200ms") || time.Since(start) > 20*time.Second {
			t.Fatalf("%v: exit %d after %v, stderr %q", args, code, time.Since(start), errOut)
		}
	}
}

// TestUsage: help per command and subcommand with an example, client help
// without node tuning outside its --store section, counts without units,
// positive sizes and durations, exit statuses, version.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"serve"}, {"produce"}, {"consume"}, {"topic", "create"}, {"topic", "list"}, {"topic", "describe"}, {"topic", "delete"}, {"bench"}, {"version"}, {"log", "verify"},
		{"group", "list"}, {"group", "describe"}, {"group", "reset"}, {"group", "delete"}} {
		out, errOut, code := runIn(t, "", append(args, "--help")...)
		if code != 0 || !strings.HasPrefix(out, "Usage: shale "+strings.Join(args, " ")) || !strings.Contains(out, "Example:") || errOut != "" {
			t.Fatalf("%v --help: exit %d, %q %q", args, code, out, errOut)
		}
		client := args[0] != "serve" && args[0] != "bench" && args[0] != "version" && args[0] != "log"
		own, node, _ := strings.Cut(out, "With --store")
		if client && (strings.Contains(own, "--roll-bytes") || !strings.Contains(node, "--roll-bytes") || !strings.Contains(own, "--timeout")) {
			t.Fatalf("%v --help: node tuning flags not in their own section:\n%s", args, out)
		}
	}
	out, _, _ := runIn(t, "", "topic", "list", "--help")
	if strings.Contains(out, "--partitions") || strings.Contains(out, "--retention") {
		t.Fatalf("topic list --help shows create's flags:\n%s", out)
	}
	out, _, _ = runIn(t, "", "serve", "--help")
	if !strings.Contains(out, "--roll-bytes SIZE") || !strings.Contains(out, ".shale-hot-") || !strings.Contains(out, "SHALE_SERVE_STORE") {
		t.Fatalf("serve --help:\n%s", out)
	}
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"topic", "create", "x", "--partitions", "1KiB"}, 2, "not a count"},
		{[]string{"topic", "create", "x", "--partitions", "4294967297"}, 2, "out of range"},
		{[]string{"topic", "create", "x", "--partitions", "0"}, 2, "out of range"},
		{[]string{"consume", "t", "--max", "1K"}, 2, "not a count"},
		{[]string{"serve", "--roll-bytes", "0"}, 2, "--roll-bytes"},
		{[]string{"serve", "--roll-age", "-1s"}, 2, "must be positive"},
		{[]string{"serve", "--store-timeout", "0"}, 2, "must be positive"},
		{[]string{"serve", "--cache-bytes", "-5"}, 2, "at least 1"},
		{[]string{"serve", "--max-inflight-rolls", "0"}, 2, "out of range"},
		{[]string{"produce", "t", "--nope"}, 2, "flag provided but not defined: --nope"},
		{[]string{"produce", "t", "--format", "json"}, 2, "--input"},
		{[]string{"produce", "t", "--input", "yaml"}, 2, "want lines, json or raw"},
		{[]string{"consume", "t", "--offset", "soon"}, 2, "not an offset"},
		{[]string{"consume", "t", "--offset", "3", "--since", "1h"}, 2, "at most one"},
		{[]string{"consume", "t", "--since", "1week"}, 2, "7d"},
		{[]string{"consume", "t", "--template", "{{.Nope"}, 2, "--template"},
		{[]string{"produce", "t", "--server", "http://127.0.0.1:1", "--store", "file:///x"}, 2, "not both"},
		{[]string{"produce", "t", "--roll-bytes", "1MiB"}, 2, "only with --store"},
		{[]string{"topic"}, 2, "missing command"},
		{[]string{"group"}, 2, "missing command"},
		{[]string{"group", "list", "--store", "file:///x"}, 2, "running server"},
		{[]string{"consume", "t", "--group", "g", "--store", "file:///x"}, 2, "running server"},
		{[]string{"group", "reset", "g", "--topic", "t", "--to-time", "soon"}, 2, "--to-time"},
		{[]string{"topic", "frob"}, 2, "unknown command"},
		{[]string{"consume", "t", "--server", "http://127.0.0.1:1", "--timeout", "2s"}, 1, "connection refused"},
		{[]string{"version"}, 0, ""},
		{[]string{"--version"}, 0, ""},
	} {
		out, errOut, code := runIn(t, "", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.says) {
			t.Errorf("shale %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), code, errOut, tc.code, tc.says)
		}
		if tc.code == 2 && !strings.Contains(errOut, "--help' for usage") {
			t.Errorf("shale %s: usage error without a pointer to help: %q", strings.Join(tc.args, " "), errOut)
		}
		if tc.args[len(tc.args)-1] == "version" && !strings.HasPrefix(out, "shale ") {
			t.Errorf("shale %s: %q", strings.Join(tc.args, " "), out)
		}
	}
}

// TestCLIOffsetsTimesAndFormats runs the client commands against a real
// server: offsets (-N, end, out of range), partitions out of range, --until,
// times as ms and dates, --since in days, --template, keys from lines,
// large lines batched by bytes, and a topic copied through JSON.
func TestCLIOffsetsTimesAndFormats(t *testing.T) {
	srv := startServer(t, fileStore(t), t.TempDir(), nil)
	at := []string{"--server", srv.url}
	c := func(stdin string, args ...string) string {
		t.Helper()
		return mustCLI(t, nil, stdin, append(args, at...)...)
	}
	c("", "topic", "create", "t", "--partitions", "2")
	before := time.Now().Add(-time.Second)
	c(numbers(0, 9), "produce", "t", "--partition", "0")

	if out := c("", "consume", "t", "--partition", "0", "--offset", "-3"); out != "7\n8\n9\n" {
		t.Fatalf("--offset -3: %q", out)
	}
	if out := c("", "consume", "t", "--offset", "end"); out != "" {
		t.Fatalf("--offset end: %q", out)
	}
	if out := c("", "consume", "t", "--partition", "0", "--offset", "2", "--until", "5"); out != "2\n3\n4\n" {
		t.Fatalf("--offset 2 --until 5: %q", out)
	}
	// A whole number is an offset, even one that looks like a time.
	if out := c("", "consume", "t", "--partition", "0", "--until", strconv.FormatInt(before.UnixMilli(), 10)); out != numbers(0, 9) {
		t.Fatalf("--until an offset past the end: %q", out)
	}
	if out := c("", "consume", "t", "--until", "@"+strconv.FormatInt(before.UnixMilli(), 10)); out != "" {
		t.Fatalf("--until a time before every record: %q", out)
	}
	for _, from := range []string{strconv.FormatInt(before.UnixMilli(), 10), before.UTC().Format("2006-01-02"), before.UTC().Format(time.RFC3339)} {
		if out := c("", "consume", "t", "--time", from); strings.Count(out, "\n") != 10 {
			t.Fatalf("--time %s: %q", from, out)
		}
	}
	if out := c("", "consume", "t", "--since", "1d"); strings.Count(out, "\n") != 10 {
		t.Fatalf("--since 1d: %q", out)
	}
	if out := c("", "consume", "t", "--partition", "0", "--offset", "-2", "--template", "{{.Partition}}/{{.Offset}}={{.Value}}"); out != "0/8=8\n0/9=9\n" {
		t.Fatalf("--template: %q", out)
	}
	for _, args := range [][]string{{"consume", "t", "--offset", "999"}, {"consume", "t", "--partition", "0", "--offset", "11"}} {
		_, errOut, code := cli(t, nil, "", append(args, at...)...)
		if code != 1 || !strings.Contains(errOut, "offset") || !strings.Contains(errOut, "out of range") || !strings.Contains(errOut, "offsets 0 to 9") {
			t.Fatalf("%v: exit %d, %q", args, code, errOut)
		}
	}
	for _, cmd := range []string{"consume", "produce"} {
		for _, p := range []string{"-5", "2"} {
			_, errOut, code := cli(t, nil, "v\n", append([]string{cmd, "t", "--partition", p}, at...)...)
			if code != 2 || !strings.Contains(errOut, "topic t has partitions 0 to 1") {
				t.Fatalf("%s --partition %s: exit %d, %q", cmd, p, code, errOut)
			}
		}
	}

	// Keys per line, headers and a fixed timestamp.
	c("a:1\nb:2\n", "produce", "t", "--key-delimiter", ":", "--header", "h=x", "--timestamp", "2026-11-30")
	var recs []httpapi.JSONRecord
	for _, r := range parseLines[httpapi.JSONRecord](t, c("", "consume", "t", "--format", "json")) {
		if r.Key != nil {
			recs = append(recs, r)
		}
	}
	if len(recs) != 2 {
		t.Fatalf("keyed records: %+v", recs)
	}
	for _, r := range recs {
		if r.Key == nil || r.Timestamp != time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC).UnixMilli() || len(r.Headers) != 1 || *r.Headers[0].Value != "x" ||
			*r.Partition != record.KeyPartition([]byte(*r.Key), 2) {
			t.Fatalf("keyed record %+v", r)
		}
	}
	_, errOut, code := cli(t, nil, "a:1\nno delimiter\nc:3\n", append([]string{"produce", "t", "--key-delimiter", ":"}, at...)...)
	if code != 1 || !strings.Contains(errOut, "input line 2: no key delimiter") || !strings.Contains(errOut, "1 records acknowledged; input line 2 is the first not acknowledged") {
		t.Fatalf("line without a delimiter: exit %d, %q", code, errOut)
	}

	// 1000 lines of 10 KB: the old produce sent them in one 10 MB request
	// and got 413.
	c("", "topic", "create", "big")
	line := strings.Repeat("x", 10_000)
	out := c(strings.Repeat(line+"\n", 1000), "produce", "big", "--verbose")
	if !strings.Contains(out, "produced 1000 records") || strings.Count(out, "partition 0 offsets") < 3 {
		t.Fatalf("large lines: %q", out)
	}

	// --input raw: all of stdin as one record.
	c("", "topic", "create", "raw")
	c("two\nlines\x00\xff", "produce", "raw", "--input", "raw", "--key", "k")
	if recs := parseLines[httpapi.JSONRecord](t, c("", "consume", "raw", "--format", "json")); len(recs) != 1 || *recs[0].Key != "k" {
		t.Fatalf("raw: %+v", recs)
	} else if v, _ := httpapi.FromJSON(&recs[0]); string(v.Value) != "two\nlines\x00\xff" {
		t.Fatalf("raw value %q", v.Value)
	}
}

// TestCopyTopicThroughJSON: consume --format json | produce --input json
// copies a topic with keys, headers, timestamps and binary values, byte for
// byte, partition by partition.
func TestCopyTopicThroughJSON(t *testing.T) {
	srv := startServer(t, fileStore(t), t.TempDir(), nil)
	at := []string{"--server", srv.url}
	c := func(stdin string, args ...string) string {
		t.Helper()
		return mustCLI(t, nil, stdin, append(args, at...)...)
	}
	c("", "topic", "create", "src", "--partitions", "3")
	c("", "topic", "create", "dst", "--partitions", "3")
	cl := httpapi.NewClient(srv.url)
	for p := range int32(3) {
		var recs []record.Record
		for i := range 50 {
			r := record.Record{Timestamp: int64(1_700_000_000_000 + i), Value: []byte{0xff, byte(i), 0, 'v'}}
			if i%2 == 0 {
				r.Key = []byte(fmt.Sprint("k", i))
				r.Headers = []record.Header{{Key: "bin", Value: []byte{0, 0xfe}}, {Key: "nil"}, {Key: "s", Value: []byte("text")}}
			}
			if i%7 == 0 {
				r.Value = nil
			}
			recs = append(recs, r)
		}
		if _, err := cl.Produce(context.Background(), "src", p, recs); err != nil {
			t.Fatal(err)
		}
	}
	src := c("", "consume", "src", "--format", "json")
	out := c(src, "produce", "dst", "--input", "json")
	if !strings.Contains(out, "produced 150 records") {
		t.Fatalf("copy: %q", out)
	}
	sorted := func(s string) []string {
		l := strings.Split(strings.TrimSpace(s), "\n")
		sort.Strings(l)
		return l
	}
	a, b := sorted(src), sorted(c("", "consume", "dst", "--format", "json"))
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatalf("copy differs:\n%s\n---\n%s", strings.Join(a[:3], "\n"), strings.Join(b[:3], "\n"))
	}
	if !strings.Contains(out, "records/s") {
		t.Fatalf("summary without a rate: %q", out)
	}
}

// TestProduceFromPipe: seq 1 200000 | shale produce T with defaults
// acknowledges every line in order; it logs the rate (the target is
// 100,000 records/s of short lines; the old produce did ~3,600).
func TestProduceFromPipe(t *testing.T) {
	srv := startServer(t, fileStore(t), t.TempDir(), nil, "--roll-age", "250ms")
	mustCLI(t, nil, "", "topic", "create", "T", "--server", srv.url)
	in := numbers(1, 200_000)
	out := mustCLI(t, nil, in, "produce", "T", "--server", srv.url)
	t.Logf("seq 1 200000 | shale produce T: %s", strings.TrimSpace(out))
	if !strings.HasPrefix(out, "produced 200000 records") {
		t.Fatalf("produce: %q", out)
	}
	if got := mustCLI(t, nil, "", "consume", "T", "--server", srv.url); got != in {
		t.Fatalf("consumed %d bytes, want the %d bytes produced, in order", len(got), len(in))
	}
}

// TestEnvironmentIsScoped: a variable set for one command does not change
// another (SHALE_PARTITION for produce pinned consume; SHALE_STORE for
// serve made clients bypass the server).
func TestEnvironmentIsScoped(t *testing.T) {
	srv := startServer(t, fileStore(t), t.TempDir(), nil)
	at := []string{"--server", srv.url}
	mustCLI(t, nil, "", append([]string{"topic", "create", "t", "--partitions", "2"}, at...)...)
	env := []string{"SHALE_PRODUCE_PARTITION=1"}
	mustCLI(t, env, "one\n", append([]string{"produce", "t"}, at...)...)
	mustCLI(t, nil, "zero\n", append([]string{"produce", "t", "--partition", "0"}, at...)...)
	// Neither a produce variable nor the old flat ones pin consume, and a
	// serve variable does not make a client open the store.
	empty := "file://" + t.TempDir()
	env = append(env, "SHALE_PARTITION=1", "SHALE_STORE="+empty, "SHALE_SERVE_STORE="+empty)
	out := mustCLI(t, env, "", append([]string{"consume", "t"}, at...)...)
	if lines := sort.StringSlice(strings.Fields(out)); len(lines) != 2 {
		t.Fatalf("consume with produce's variables set: %q", out)
	}
	if out := mustCLI(t, []string{"SHALE_SERVER=" + srv.url, "SHALE_STORE=" + empty}, "", "topic", "list"); out != "t\t2\n" {
		t.Fatalf("topic list with SHALE_SERVER and SHALE_STORE: %q", out)
	}
	// The command line beats a variable; two variables in conflict are a
	// usage error.
	if out := mustCLI(t, []string{"SHALE_SERVER=http://127.0.0.1:1"}, "", append([]string{"topic", "list"}, at...)...); out != "t\t2\n" {
		t.Fatalf("--server over SHALE_SERVER: %q", out)
	}
	if _, errOut, code := cli(t, []string{"SHALE_SERVER=" + srv.url, "SHALE_TOPIC_LIST_STORE=" + empty}, "", "topic", "list"); code != 2 || !strings.Contains(errOut, "both set") {
		t.Fatalf("SHALE_SERVER and SHALE_TOPIC_LIST_STORE: exit %d, %q", code, errOut)
	}
	if _, errOut, code := cli(t, []string{"SHALE_CONSUME_MAX=1KiB"}, "", append([]string{"consume", "t"}, at...)...); code != 2 || !strings.Contains(errOut, "SHALE_CONSUME_MAX") {
		t.Fatalf("bad variable: exit %d, %q", code, errOut)
	}
}

// TestServeHotDir: serve on file://DIR keeps its hot segments in a
// directory of its own, so two buckets in one folder do not collide and a
// foreign file in the folder's hot/ survives; the log shows effective
// settings.
func TestServeHotDir(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "hot", "00000000000000000001.seg")
	if err := os.MkdirAll(filepath.Dir(foreign), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(foreign, []byte("not shale's"), 0o644)
	var hots []string
	for _, b := range []string{"a", "b"} {
		srv := startServerArgs(t, nil, "serve", "--store", "file://"+filepath.Join(dir, b), "--listen", "127.0.0.1:0", "--roll-age", "40ms")
		mustCLI(t, nil, "", "topic", "create", "t", "--server", srv.url)
		mustCLI(t, nil, "x\n", "produce", "t", "--server", srv.url)
		srv.cmd.Process.Signal(syscall.SIGTERM)
		<-srv.exited
		log := srv.stderr.String()
		m := regexp.MustCompile(`hot_dir=(\S+)`).FindStringSubmatch(log)
		for _, want := range []string{"roll_age=40ms", "roll_bytes=16777216", "store_timeout=30s", "max_batch_bytes=8388608", "cache_bytes=", "hot_bytes=", "compression=lz4", "max_inflight_rolls=4", "max_partitions="} {
			if !strings.Contains(log, want) {
				t.Fatalf("startup log lacks %s: %s", want, log)
			}
		}
		if m == nil || filepath.Dir(m[1]) != dir || filepath.Base(m[1]) == "hot" {
			t.Fatalf("hot dir of bucket %s: %v in %s", b, m, log)
		}
		hots = append(hots, m[1])
	}
	if hots[0] == hots[1] {
		t.Fatalf("two buckets share hot dir %s", hots[0])
	}
	if b, err := os.ReadFile(foreign); err != nil || string(b) != "not shale's" {
		t.Fatalf("foreign segment file: %q, %v", b, err)
	}
}

// TestSecondSignalExits: during a slow shutdown (the store is down, so
// committing accepted records retries for --store-timeout), a second
// SIGTERM ends the process at once.
func TestSecondSignalExits(t *testing.T) {
	m := tiertest.StartPrivateMinIO(t)
	se := minioEnv(m.Endpoint(), "signal")
	srv := startServer(t, se, t.TempDir(), nil, "--store-timeout", "2m", "--roll-age", "50ms")
	mustCLI(t, nil, "", "topic", "create", "t", "--server", srv.url)
	m.Stop(t)
	// A produce the node accepts but cannot commit.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go httpapi.NewClient(srv.url).Produce(ctx, "t", 0, []record.Record{{Value: []byte("pending")}})
	time.Sleep(time.Second)
	srv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-srv.exited:
		t.Fatalf("shutdown was not slow; the test proves nothing: %s", srv.stderr)
	case <-time.After(2 * time.Second):
	}
	start := time.Now()
	srv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-srv.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("a second SIGTERM did not end the process: %s", srv.stderr)
	}
	if code := srv.cmd.ProcessState.ExitCode(); code != 130 {
		t.Fatalf("exit %d after %v, want 130: %s", code, time.Since(start), srv.stderr)
	}
	if !strings.Contains(srv.stderr.String(), "second") {
		t.Fatalf("no word of the second signal: %s", srv.stderr)
	}
}

// TestFollowReconnects: consume --follow survives a server restart and
// goes on from the next offset.
func TestFollowReconnects(t *testing.T) {
	se := fileStore(t)
	srv := startServer(t, se, t.TempDir(), nil)
	addr := strings.TrimPrefix(srv.url, "http://")
	mustCLI(t, nil, "", "topic", "create", "t", "--server", srv.url)
	mustCLI(t, nil, "1\n2\n", "produce", "t", "--server", srv.url)
	follow := shaleCmd(context.Background(), nil, "consume", "t", "--follow", "--max", "4", "--server", srv.url, "--timeout", "5s")
	out, errOut := &lockedWriter{w: &bytes.Buffer{}}, &lockedWriter{w: &bytes.Buffer{}}
	follow.Stdout, follow.Stderr = out, errOut
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- follow.Wait() }()
	defer follow.Process.Kill()
	waitFor(t, func() bool { return strings.Count(out.String(), "\n") == 2 })
	srv.cmd.Process.Signal(syscall.SIGTERM)
	<-srv.exited
	time.Sleep(500 * time.Millisecond) // the follower meets a refused connection
	var srv2 *server
	for i := 0; ; i++ {
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			break
		} else if i > 50 {
			t.Fatalf("port %s stays busy: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	srv2 = startServerArgs(t, se.env, "serve", "--store", se.url, "--hot-dir", t.TempDir(), "--listen", addr, "--roll-age", "30ms")
	mustCLI(t, nil, "3\n4\n5\n", "produce", "t", "--server", srv2.url)
	select {
	case err := <-done:
		if err != nil || out.String() != "1\n2\n3\n4\n" {
			t.Fatalf("consume --follow across a restart: %v, %q, stderr %q", err, out.String(), errOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("consume --follow did not resume: %q, stderr %q", out.String(), errOut.String())
	}
	if !strings.Contains(errOut.String(), "retrying") {
		t.Fatalf("the follower never saw the server gone: %q", errOut.String())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 30s")
		}
	}
}

// TestLogVerify: shale log verify finds no problem in a healthy bucket,
// and names the object a damaged one lost.
func TestLogVerify(t *testing.T) {
	se := fileStore(t)
	srv := startServer(t, se, t.TempDir(), nil)
	mustCLI(t, nil, "", "topic", "create", "t", "--server", srv.url)
	mustCLI(t, nil, "a\nb\n", "produce", "t", "--server", srv.url)
	srv.cmd.Process.Signal(syscall.SIGTERM)
	<-srv.exited
	if out := mustCLI(t, nil, "", "log", "verify", "--store", se.url); !strings.HasPrefix(out, "no problems") {
		t.Fatalf("log verify: %q", out)
	}
	objs, _ := filepath.Glob(filepath.Join(strings.TrimPrefix(se.url, "file://"), "data", "*"))
	if len(objs) == 0 {
		t.Fatal("no data objects")
	}
	os.Remove(objs[0])
	out, errOut, code := cli(t, nil, "", "log", "verify", "--store", se.url)
	if code != 1 || !strings.Contains(out, filepath.Base(objs[0])) || !strings.Contains(errOut, "1 problem") {
		t.Fatalf("log verify of a bucket missing %s: exit %d, %q %q", objs[0], code, out, errOut)
	}
	if _, errOut, code := cli(t, nil, "", "log", "verify"); code != 2 || !strings.Contains(errOut, "--store is required") {
		t.Fatalf("log verify without --store: exit %d, %q", code, errOut)
	}
}
