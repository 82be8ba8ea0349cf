package tiertest

import (
	"bytes"
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
	// A private server is one this process can kill, so SHALE_TEST_MINIO
	// cannot stand in for it.
	privateMissingHint = "no minio binary: run `make minio`, or set SHALE_MINIO_BIN to a minio binary (a private, stoppable server cannot use SHALE_TEST_MINIO)"
)

// server is the one MinIO server shared by all tests in a test binary.
var server struct {
	once    sync.Once
	ep      Endpoint // without Bucket
	missing bool     // no binary found
	err     error
}

// minioBin is the minio binary found by findMinIO, or "" if there is none.
// The lookup may run `go env`, so it is done once per test binary.
var minioBin = sync.OnceValue(findMinIO)

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
		skipOrFail(t, missingHint)
	}
	if server.err != nil {
		t.Fatalf("start minio: %v", server.err)
	}

	ep := server.ep
	ep.Bucket = newBucketName()
	client := makeBucket(t, ep)
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

// PrivateMinIO is a MinIO server owned by one test, which can be stopped
// and restarted on the same address and data. It is for tests of what
// happens while the store is gone and after it comes back; tests that only
// need a bucket should use StartMinIO, which shares one server.
//
// Stop and Start report failure with t.Fatal, so like it they must be
// called from the goroutine running the test; that goroutine owns the
// server.
type PrivateMinIO struct {
	bin  string
	dir  string   // holds data/ and minio.log, and outlives each run
	ep   Endpoint // fixed for the server's life, across restarts
	proc *process // the current run, nil while stopped
}

// StartPrivateMinIO starts a new MinIO server on a free loopback port with
// its own data directory, and creates one bucket on it. The binary is found,
// and its absence skips or fails the test, as for StartMinIO, except that
// SHALE_TEST_MINIO is never used. The server is killed and its data removed
// when the test ends.
func StartPrivateMinIO(t testing.TB) *PrivateMinIO {
	t.Helper()
	bin := minioBin()
	if bin == "" {
		skipOrFail(t, privateMissingHint)
	}
	dir, err := newDir()
	if err != nil {
		t.Fatalf("start private minio: %v", err)
	}
	addr, err := freeAddr()
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start private minio: %v", err)
	}
	m := &PrivateMinIO{
		bin: bin,
		dir: dir,
		ep: Endpoint{
			Addr:      addr,
			AccessKey: testUser,
			SecretKey: testPassword,
			Bucket:    newBucketName(),
		},
	}
	// Registered before the first start, so that a server which starts but
	// is never ready is still killed and its directory removed.
	t.Cleanup(func() {
		if p := m.proc; p != nil {
			m.proc = nil
			if err := p.kill(); err != nil {
				t.Logf("stop minio on %s: %v", addr, err)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("remove minio data: %v", err)
		}
	})
	m.Start(t)
	makeBucket(t, m.ep)
	return m
}

// Endpoint returns the server's address, credentials and bucket. They stay
// the same across Stop and Start.
func (m *PrivateMinIO) Endpoint() Endpoint { return m.ep }

// Stop kills the server with SIGKILL, as a crash would, and returns once
// its address refuses connections, so that each attempt a client makes
// from then on fails at once with a connection error. Everything the
// server had acknowledged survives: a killed process loses nothing it has
// handed to the kernel, unlike a power cut. Stopping a stopped server does
// nothing.
func (m *PrivateMinIO) Stop(t testing.TB) {
	t.Helper()
	p := m.proc
	if p == nil {
		return
	}
	m.proc = nil
	if err := p.kill(); err != nil {
		t.Fatalf("stop minio on %s: %v", m.ep.Addr, err)
	}
	// The kernel closes the listener when the process dies, so this
	// normally succeeds at the first dial; a connection accepted here means
	// some other process has taken the port.
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", m.ep.Addr, time.Second)
		if err == nil {
			conn.Close()
		} else if errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stop minio: %s still accepts connections 10s after the server exited", m.ep.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Start restarts a stopped server on the same address and data directory,
// and returns once it is ready; objects and the bucket survive. Starting a
// running server does nothing.
func (m *PrivateMinIO) Start(t testing.TB) {
	t.Helper()
	if p := m.proc; p != nil {
		select {
		case <-p.exited: // died on its own: start it again
			m.proc = nil
		default:
			return
		}
	}
	// The port can still be held for a moment after the last run, or be
	// taken briefly by another process's outgoing connection, since it was
	// picked from the ephemeral range. MinIO then exits at once, so try
	// again for a few seconds.
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := launch(m.bin, m.dir, m.ep.Addr)
		if err == nil {
			m.proc = p
			return
		}
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			t.Fatalf("start minio on %s: %v", m.ep.Addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// skipOrFail ends a test that needs a MinIO binary there is none of.
func skipOrFail(t testing.TB, hint string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(hint)
	}
	t.Skip(hint)
}

func newBucketName() string {
	return "shale-test-" + strings.ToLower(rand.Text()[:12])
}

// makeBucket creates ep.Bucket and returns a client for ep.
func makeBucket(t testing.TB, ep Endpoint) *minio.Client {
	t.Helper()
	client, err := minio.New(ep.Addr, &minio.Options{Creds: credentials.NewStaticV4(ep.AccessKey, ep.SecretKey, "")})
	if err != nil {
		t.Fatalf("minio client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.MakeBucket(ctx, ep.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s on %s: %v", ep.Bucket, ep.Addr, err)
	}
	return client
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
	bin := minioBin()
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

// runMinIO starts bin on a free loopback port with a fresh data directory
// and waits until it is ready. The server is never stopped: it dies with
// the test binary.
func runMinIO(bin string) (Endpoint, error) {
	dir, err := newDir()
	if err != nil {
		return Endpoint{}, err
	}
	addr, err := freeAddr()
	if err != nil {
		return Endpoint{}, err
	}
	if _, err := launch(bin, dir, addr); err != nil {
		return Endpoint{}, err
	}
	return Endpoint{Addr: addr, AccessKey: testUser, SecretKey: testPassword}, nil
}

// newDir makes a directory for one server's data and log. Its name holds
// this process's id, so that removeStaleDirs can tell when it is orphaned.
func newDir() (string, error) {
	removeStaleDirs()
	return os.MkdirTemp("", fmt.Sprintf("shale-minio-%d-", os.Getpid()))
}

// errAddrInUse marks a launch that failed because the server's address, or
// the console address it was given, was taken.
var errAddrInUse = errors.New("address in use")

// process is one run of a MinIO server.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
}

// launch starts bin serving dir/data on addr, with its log in dir/minio.log,
// and waits until it is ready. If the server exits first because a port was
// taken, the error wraps errAddrInUse.
func launch(bin, dir, addr string) (*process, error) {
	// The console is off (MINIO_BROWSER=off) but MinIO still wants a port
	// for it; a fresh one each run keeps it out of the way of addr.
	console, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "minio.log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
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
	p := &process{cmd: cmd, exited: make(chan struct{})}

	// With Pdeathsig the kernel signals the child when the thread that
	// started it exits, not the process, so that thread stays locked to
	// this goroutine, blocked in Wait, for the server's whole life.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(p.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}

	// A client of its own, so that no idle connection to this run lingers
	// in http.DefaultClient, and so that a server that accepts but never
	// answers cannot hang the loop.
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	ready := "http://" + addr + "/minio/health/ready"
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := hc.Get(ready); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.exited:
			out, _ := os.ReadFile(logPath)
			err := fmt.Errorf("%s exited before it was ready (%s): %s", bin, cmd.ProcessState, out)
			// MinIO checks its ports before it listens and says "Specified
			// port is already in use".
			if bytes.Contains(out, []byte("already in use")) {
				err = fmt.Errorf("%w: %w", errAddrInUse, err)
			}
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.kill()
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%s not ready at %s after 60s: %s", bin, addr, out)
		}
	}
}

// kill sends SIGKILL to the server and waits until it has exited.
func (p *process) kill() error {
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill minio: %w", err)
	}
	<-p.exited
	return nil
}

// removeStaleDirs deletes the data directories of servers whose test
// binaries have exited. Nothing else can: the shared server outlives every
// test and Go has no exit hook, and a private server's cleanup does not run
// if its test binary is killed.
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
