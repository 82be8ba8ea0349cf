package main

// End-to-end tests: real shale processes (this test binary re-executed as
// the shale command), real stores, SIGKILL.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shalelog/shale/httpapi"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/tiertest"
)

func TestMain(m *testing.M) {
	if os.Getenv("SHALE_TEST_MAIN") == "1" {
		// Re-executed by a test as the shale command.
		main()
		return
	}
	os.Exit(m.Run())
}

// storeEnv is a store URL and the environment a process needs to reach it.
type storeEnv struct {
	name string
	url  string
	env  []string
}

func fileStore(t *testing.T) storeEnv {
	return storeEnv{name: "file", url: "file://" + t.TempDir()}
}

func minioStore(t *testing.T) storeEnv { return minioEnv(tiertest.StartMinIO(t), "shale") }

// minioEnv is a minio:// store under prefix on ep's bucket.
func minioEnv(ep tiertest.Endpoint, prefix string) storeEnv {
	return storeEnv{name: "minio", url: fmt.Sprintf("minio://%s/%s/%s", ep.Addr, ep.Bucket, prefix),
		env: []string{"MINIO_ROOT_USER=" + ep.AccessKey, "MINIO_ROOT_PASSWORD=" + ep.SecretKey}}
}

func s3Store(t *testing.T) storeEnv {
	ep := tiertest.StartMinIO(t)
	return storeEnv{name: "s3", url: fmt.Sprintf("s3://%s/shale", ep.Bucket),
		env: []string{"AWS_ACCESS_KEY_ID=" + ep.AccessKey, "AWS_SECRET_ACCESS_KEY=" + ep.SecretKey, "AWS_ENDPOINT_URL_S3=http://" + ep.Addr}}
}

// open opens the store from the test process, for inspection.
func (se storeEnv) open(t *testing.T) tier.Store {
	t.Helper()
	for _, kv := range se.env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	s, err := tier.Open(context.Background(), se.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func shaleCmd(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "SHALE_TEST_MAIN=1"), env...)
	return cmd
}

// server is a running `shale serve` process.
type server struct {
	cmd    *exec.Cmd
	url    string
	kafka  string // the Kafka listener's address, if serve printed one
	stderr *bytes.Buffer
	exited chan struct{}
}

func startServer(t *testing.T, se storeEnv, hotDir string, env []string, args ...string) *server {
	t.Helper()
	args = append([]string{"serve", "--store", se.url, "--hot-dir", hotDir, "--listen", "127.0.0.1:0", "--roll-age", "30ms"}, args...)
	return startServerArgs(t, append(se.env, env...), args...)
}

// startServerArgs runs shale with args (serve and its flags) and waits
// until it listens.
func startServerArgs(t *testing.T, env []string, args ...string) *server {
	t.Helper()
	if args[0] == "serve" && !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--kafka-listen") }) {
		// Not the default port: tests run side by side.
		args = append(args, "--kafka-listen", "127.0.0.1:0")
	}
	cmd := shaleCmd(context.Background(), env, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = &lockedWriter{w: s.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(s.exited) }()
	lines := bufio.NewScanner(stdout)
	ready := make(chan string, 1)
	go func() {
		for lines.Scan() {
			if after, ok := strings.CutPrefix(lines.Text(), "shale kafka protocol on "); ok {
				s.kafka = after // printed before the line below: ready orders it
			}
			if _, after, ok := strings.Cut(lines.Text(), "listening on "); ok {
				ready <- strings.Fields(after)[0]
			}
		}
	}()
	select {
	case s.url = <-ready:
	case <-s.exited:
		t.Fatalf("shale serve exited: %s", s.stderr)
	case <-time.After(60 * time.Second):
		s.kill()
		t.Fatalf("shale serve did not start: %s", s.stderr)
	}
	t.Cleanup(s.kill)
	return s
}

func (s *server) kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.w)
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// cli runs a shale client command and returns its stdout and exit code.
func cli(t *testing.T, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := shaleCmd(ctx, env, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func mustCLI(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, env, stdin, args...)
	if code != 0 {
		t.Fatalf("shale %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func parseLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var res []T
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		res = append(res, v)
	}
	return res
}

// TestCLIRoundTrip: topic commands, produce and consume through the CLI,
// against a server and directly on the bucket, on each store.
func TestCLIRoundTrip(t *testing.T) {
	for _, mk := range []func(*testing.T) storeEnv{fileStore, minioStore, s3Store} {
		se := mk(t)
		t.Run(se.name, func(t *testing.T) {
			srv := startServer(t, se, t.TempDir(), nil)
			at := []string{"--server", srv.url}
			mustCLI(t, nil, "", append([]string{"topic", "create", "cli", "--partitions", "3"}, at...)...)
			if out := mustCLI(t, nil, "", append([]string{"topic", "list"}, at...)...); !strings.Contains(out, "cli\t3") {
				t.Fatalf("topic list: %q", out)
			}
			input := "first\n\xff\xfebinary\nthird line with spaces\n\n"
			out := mustCLI(t, nil, input, append([]string{"produce", "cli", "--key", "k1", "--output", "json"}, at...)...)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			acks := parseLines[httpapi.ProduceResult](t, strings.Join(lines[:len(lines)-1], "\n")) // then a summary
			total := 0
			for _, a := range acks {
				total += a.Records
				if a.LastOffset-a.FirstOffset+1 != int64(a.Records) {
					t.Fatalf("ack %+v", a)
				}
			}
			if total != 4 {
				t.Fatalf("acknowledged %d records, want 4: %s", total, out)
			}
			// Without --partition, every partition; --format json keeps binary values.
			out = mustCLI(t, nil, "", append([]string{"consume", "cli", "--format", "json"}, at...)...)
			recs := parseLines[httpapi.JSONRecord](t, out)
			if len(recs) != 4 {
				t.Fatalf("consumed %d records: %s", len(recs), out)
			}
			want := []string{"first", "\xff\xfebinary", "third line with spaces", ""}
			for i, r := range recs {
				got, err := httpapi.FromJSON(&r)
				if err != nil {
					t.Fatal(err)
				}
				if string(got.Value) != want[i] || string(got.Key) != "k1" || r.Offset != acks[0].FirstOffset+int64(i) || r.Partition == nil || *r.Partition != acks[0].Partition {
					t.Fatalf("record %d: %+v, want value %q key k1", i, r, want[i])
				}
			}
			if recs[1].ValueB64 == nil {
				t.Fatalf("invalid UTF-8 value not given as value_b64: %+v", recs[1])
			}
			// --max stops in the middle of a read and still prints what it took.
			out = mustCLI(t, nil, "", append([]string{"consume", "cli", "--partition", fmt.Sprint(acks[0].Partition), "--max", "3"}, at...)...)
			if strings.Count(out, "\n") != 3 || !strings.HasPrefix(out, "first\n") {
				t.Fatalf("consume --max 3: %q", out)
			}
			// Text output, a partition and an offset.
			out = mustCLI(t, nil, "", append([]string{"consume", "cli", "--partition", fmt.Sprint(acks[0].Partition), "--offset", "2"}, at...)...)
			if out != "third line with spaces\n\n" {
				t.Fatalf("text consume from offset 2: %q", out)
			}
			// Directly on the bucket, as an ephemeral node, with the server still running.
			direct := []string{"--store", se.url}
			mustCLI(t, se.env, "x\ny\n", append([]string{"produce", "cli", "--partition", "0"}, direct...)...)
			out = mustCLI(t, se.env, "", append([]string{"consume", "cli", "--partition", "0", "--max", "2", "--offset", "0"}, direct...)...)
			if !strings.HasSuffix(out, "x\ny\n") && !strings.HasPrefix(out, "x\ny\n") {
				t.Fatalf("direct consume: %q", out)
			}
			// The server sees what the ephemeral node wrote.
			out = mustCLI(t, nil, "", append([]string{"topic", "describe", "cli"}, at...)...)
			if !strings.Contains(out, "PARTITION") {
				t.Fatalf("describe: %q", out)
			}
			// --since reads recent records; --time in the future reads none.
			out = mustCLI(t, nil, "", append([]string{"consume", "cli", "--since", "1h"}, at...)...)
			if strings.Count(out, "\n") != 6 {
				t.Fatalf("consume --since 1h: %q", out)
			}
			future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
			if out = mustCLI(t, nil, "", append([]string{"consume", "cli", "--time", future}, at...)...); out != "" {
				t.Fatalf("consume --time future: %q", out)
			}
			// Errors: unknown topic, bad flags.
			if _, errOut, code := cli(t, nil, "v\n", append([]string{"produce", "nope"}, at...)...); code == 0 || !strings.Contains(errOut, "unknown topic") {
				t.Fatalf("produce to unknown topic: exit %d, %q", code, errOut)
			}
			if _, errOut, code := cli(t, nil, "", append([]string{"topic", "create", "bad name"}, at...)...); code == 0 || !strings.Contains(errOut, "invalid topic") {
				t.Fatalf("create bad name: exit %d, %q", code, errOut)
			}
			// --follow waits for new records, from another process.
			follow := shaleCmd(context.Background(), nil, append([]string{"consume", "cli", "--partition", "1", "--offset", "0", "--follow", "--max", "2"}, at...)...)
			var followOut, followErr bytes.Buffer
			follow.Stdout, follow.Stderr = &followOut, &followErr
			if err := follow.Start(); err != nil {
				t.Fatal(err)
			}
			followed := make(chan error, 1)
			go func() { followed <- follow.Wait() }()
			time.Sleep(300 * time.Millisecond)
			mustCLI(t, nil, "late-1\nlate-2\nlate-3\n", append([]string{"produce", "cli", "--partition", "1"}, at...)...)
			select {
			case err := <-followed:
				if err != nil || followOut.String() != "late-1\nlate-2\n" {
					t.Fatalf("consume --follow: %v, %q, stderr %q", err, followOut.String(), followErr.String())
				}
			case <-time.After(30 * time.Second):
				follow.Process.Kill()
				t.Fatal("consume --follow did not return the new records")
			}
			checkObjectsWithStockArrow(t, se.open(t))
			mustCLI(t, nil, "", append([]string{"topic", "delete", "cli"}, at...)...)
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"produce", "--help"}, {"consume", "--help"}, {"topic", "--help"}, {"topic", "create", "--help"}, {"bench", "--help"}} {
		out, errOut, code := cli(t, nil, "", args...)
		if code != 0 || !strings.Contains(out+errOut, "Usage") {
			t.Fatalf("shale %v: exit %d, %q %q", args, code, out, errOut)
		}
	}
	if _, errOut, code := cli(t, nil, "", "frobnicate"); code == 0 || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("unknown command: exit %d %q", code, errOut)
	}
}

// TestMissingBucketAndUnreachableStore: clear errors, not hangs.
func TestMissingBucketAndUnreachableStore(t *testing.T) {
	ep := tiertest.StartMinIO(t)
	minioEnv := []string{"MINIO_ROOT_USER=" + ep.AccessKey, "MINIO_ROOT_PASSWORD=" + ep.SecretKey}
	s3Env := []string{"AWS_ACCESS_KEY_ID=" + ep.AccessKey, "AWS_SECRET_ACCESS_KEY=" + ep.SecretKey, "AWS_ENDPOINT_URL_S3=http://" + ep.Addr}
	for _, tc := range []struct {
		name, url string
		env       []string
		says      string
	}{
		{"minio missing bucket", "minio://" + ep.Addr + "/no-such-bucket", minioEnv, "--create-bucket"},
		{"s3 missing bucket", "s3://no-such-bucket/x", s3Env, "--create-bucket"},
		{"minio unreachable", "minio://127.0.0.1:1/b", minioEnv, "127.0.0.1:1"},
		{"bad scheme", "ftp://x", nil, "unknown scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, errOut, code := cli(t, tc.env, "", "topic", "list", "--store", tc.url)
			if code == 0 || !strings.Contains(errOut, tc.says) {
				t.Fatalf("exit %d, stderr %q; want an error mentioning %q", code, errOut, tc.says)
			}
			if d := time.Since(start); d > time.Minute {
				t.Fatalf("took %v to fail", d)
			}
		})
	}
}

// TestCreateBucket: --create-bucket makes a missing bucket, on both remote
// backends, and the node then works on it.
func TestCreateBucket(t *testing.T) {
	ep := tiertest.StartMinIO(t)
	minioEnv := []string{"MINIO_ROOT_USER=" + ep.AccessKey, "MINIO_ROOT_PASSWORD=" + ep.SecretKey}
	s3Env := []string{"AWS_ACCESS_KEY_ID=" + ep.AccessKey, "AWS_SECRET_ACCESS_KEY=" + ep.SecretKey, "AWS_ENDPOINT_URL_S3=http://" + ep.Addr, "AWS_REGION=us-east-1"}
	for name, tc := range map[string]struct {
		url string
		env []string
	}{
		"minio": {"minio://" + ep.Addr + "/made-by-minio/p", minioEnv},
		"s3":    {"s3://made-by-s3/p", s3Env},
	} {
		t.Run(name, func(t *testing.T) {
			mustCLI(t, tc.env, "", "topic", "create", "t", "--store", tc.url, "--create-bucket")
			out := mustCLI(t, tc.env, "", "topic", "list", "--store", tc.url)
			if !strings.Contains(out, "t") {
				t.Fatalf("topic list after --create-bucket: %q", out)
			}
		})
	}
}
