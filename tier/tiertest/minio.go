package tiertest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Endpoint is a MinIO server and a bucket on it that belongs to one test.
type Endpoint struct {
	Addr      string // host:port, plain HTTP
	AccessKey string
	SecretKey string
	Bucket    string
}

const (
	testUser     = "shale-test"
	testPassword = "shale-test-secret"
	missingHint  = "no minio binary: run `make minio`, or set SHALE_MINIO_BIN to a minio binary, or SHALE_TEST_MINIO=host:port to use a running server"
)

// server is the one MinIO server shared by all tests in a test binary.
var server struct {
	once    sync.Once
	ep      Endpoint // without Bucket
	missing bool     // no binary found
	err     error
}

// StartMinIO returns a fresh, empty bucket on a MinIO server. The first call
// in a test binary starts the server, from $SHALE_MINIO_BIN, else minio in
// PATH, else $(go env GOPATH)/bin/minio, and it lives until the binary exits.
// If SHALE_TEST_MINIO is set to host:port, that server is used instead, with
// the credentials in SHALE_TEST_MINIO_USER and SHALE_TEST_MINIO_PASSWORD.
//
// Without a binary the test is skipped, except under CI=true, where it
// fails: CI must never pass by skipping the remote backends.
func StartMinIO(t testing.TB) Endpoint {
	t.Helper()
	server.once.Do(startServer)
	if server.missing {
		if os.Getenv("CI") == "true" {
			t.Fatal(missingHint)
		}
		t.Skip(missingHint)
	}
	if server.err != nil {
		t.Fatalf("start minio: %v", server.err)
	}

	ep := server.ep
	ep.Bucket = "shale-test-" + strings.ToLower(rand.Text()[:12])
	client, err := minio.New(ep.Addr, &minio.Options{Creds: credentials.NewStaticV4(ep.AccessKey, ep.SecretKey, "")})
	if err != nil {
		t.Fatalf("minio client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.MakeBucket(ctx, ep.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s on %s: %v", ep.Bucket, ep.Addr, err)
	}
	// A private server dies with the test binary, but a shared one
	// (SHALE_TEST_MINIO) keeps what tests leave behind.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := client.RemoveBucketWithOptions(ctx, ep.Bucket, minio.RemoveBucketOptions{ForceDelete: true})
		if err != nil {
			t.Logf("remove bucket %s: %v", ep.Bucket, err)
		}
	})
	return ep
}

func startServer() {
	if addr := os.Getenv("SHALE_TEST_MINIO"); addr != "" {
		server.ep = Endpoint{
			Addr:      addr,
			AccessKey: os.Getenv("SHALE_TEST_MINIO_USER"),
			SecretKey: os.Getenv("SHALE_TEST_MINIO_PASSWORD"),
		}
		return
	}
	bin := findMinIO()
	if bin == "" {
		server.missing = true
		return
	}
	server.ep, server.err = runMinIO(bin)
}

func findMinIO() string {
	if bin := os.Getenv("SHALE_MINIO_BIN"); bin != "" {
		return bin
	}
	if bin, err := exec.LookPath("minio"); err == nil {
		return bin
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return ""
	}
	for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
		bin := filepath.Join(dir, "bin", "minio")
		if _, err := os.Stat(bin); err == nil {
			return bin
		}
	}
	return ""
}

// runMinIO starts bin on free loopback ports with a fresh data directory and
// waits until it is ready.
func runMinIO(bin string) (Endpoint, error) {
	removeStaleDirs()
	dir, err := os.MkdirTemp("", fmt.Sprintf("shale-minio-%d-", os.Getpid()))
	if err != nil {
		return Endpoint{}, err
	}
	addr, err := freeAddr()
	if err != nil {
		return Endpoint{}, err
	}
	console, err := freeAddr()
	if err != nil {
		return Endpoint{}, err
	}
	logPath := filepath.Join(dir, "minio.log")
	log, err := os.Create(logPath)
	if err != nil {
		return Endpoint{}, err
	}
	defer log.Close() // the child has its own copy

	cmd := exec.Command(bin, "server", "--address", addr, "--console-address", console, filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+testUser,
		"MINIO_ROOT_PASSWORD="+testPassword,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = dieWithParent()

	// With Pdeathsig the kernel signals the child when the thread that
	// started it exits, not the process, so that thread stays locked to
	// this goroutine, blocked in Wait, for the server's whole life.
	started, exited := make(chan error, 1), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return Endpoint{}, fmt.Errorf("run %s: %w", bin, err)
	}

	ready := "http://" + addr + "/minio/health/ready"
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Get(ready); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return Endpoint{Addr: addr, AccessKey: testUser, SecretKey: testPassword}, nil
			}
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logPath)
			return Endpoint{}, fmt.Errorf("%s exited before it was ready (%s): %s", bin, cmd.ProcessState, out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			out, _ := os.ReadFile(logPath)
			return Endpoint{}, fmt.Errorf("%s not ready at %s after 60s: %s", bin, addr, out)
		}
	}
}

// removeStaleDirs deletes the data directories of servers whose test
// binaries have exited; nothing else can, since the server outlives every
// test and Go has no exit hook.
func removeStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "shale-minio-*"))
	for _, dir := range dirs {
		pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), "shale-minio-"), "-")
		n, err := strconv.Atoi(pid)
		if err != nil || n == os.Getpid() {
			continue
		}
		if err := syscall.Kill(n, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(dir)
		}
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
