package fs_test

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/fs"
	"github.com/shalelog/shale/tier/tiertest"
)

func newStore(t *testing.T) (*fs.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func TestAcceptance(t *testing.T) {
	s, _ := newStore(t)
	tiertest.AcceptanceTest(t, s)
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, tc := range []struct {
		url  string
		root string
	}{
		{"file://./data", filepath.Join(dir, "data")},
		{"file://rel/nested", filepath.Join(dir, "rel", "nested")},
		{"file://" + filepath.Join(dir, "abs"), filepath.Join(dir, "abs")},
	} {
		t.Run(tc.url, func(t *testing.T) {
			s, err := tier.Open(t.Context(), tc.url)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			if got := s.String(); got != "file://"+tc.root {
				t.Errorf("String() = %q, want file://%s", got, tc.root)
			}
			if _, err := s.Put(t.Context(), "k", []byte("v")); err != nil {
				t.Fatalf("Put: %v", err)
			}
			if _, err := os.Stat(filepath.Join(tc.root, "k")); err != nil {
				t.Errorf("object not at its path: %v", err)
			}
		})
	}
	if _, err := tier.Open(t.Context(), "file://"); err == nil {
		t.Errorf("Open(file://) succeeded, want an error for the empty path")
	}
}

func TestInvalidKeys(t *testing.T) {
	s, _ := newStore(t)
	for _, key := range []string{"", "/abs", "dir/", "a//b", "./a", "a/../../escape", "..", ".tmp/x", ".lock"} {
		if _, err := s.Put(t.Context(), key, []byte("x")); err == nil {
			t.Errorf("Put(%q) succeeded, want an error", key)
		}
		if _, err := s.Head(t.Context(), key); err == nil || errors.Is(err, tier.ErrNotFound) {
			t.Errorf("Head(%q) = %v, want an invalid-key error", key, err)
		}
	}
}

// A key cannot be both an object and a directory of objects; the store must
// say so rather than report a conflict or lose data, and must let the key
// be an object again once the directory's objects are gone.
func TestObjectDirectoryCollision(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	if _, err := s.Put(ctx, "a/b", []byte("object")); err != nil {
		t.Fatal(err)
	}
	for name, put := range map[string]func(string) error{
		"Put":         func(k string) error { _, err := s.Put(ctx, k, nil); return err },
		"PutIfAbsent": func(k string) error { _, err := s.PutIfAbsent(ctx, k, nil); return err },
	} {
		if err := put("a/b/c"); err == nil || errors.Is(err, tier.ErrConflict) {
			t.Errorf("%s under an object = %v, want a collision error", name, err)
		}
	}
	if err := s.Delete(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "a/b/c", []byte("nested")); err != nil {
		t.Fatalf("Put after the object was deleted: %v", err)
	}
	if _, err := s.PutIfAbsent(ctx, "a/b", nil); err == nil || errors.Is(err, tier.ErrConflict) {
		t.Errorf("PutIfAbsent over a directory = %v, want a collision error", err)
	}
	if _, err := s.Head(ctx, "a/b"); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("Head of a directory = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "a/b"); err != nil {
		t.Errorf("Delete of a directory = %v, want nil (no such object)", err)
	}
	if err := s.Delete(ctx, "a/b/c"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "a/b", []byte("object again")); err != nil {
		t.Errorf("Put after the directory emptied: %v", err)
	}
}

// Files put in the root by something other than the store carry no ETag
// attribute; the store must fall back to hashing them.
func TestForeignFile(t *testing.T) {
	s, dir := newStore(t)
	data := []byte("copied in by hand")
	if err := os.MkdirAll(filepath.Join(dir, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x", "y"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(data)
	want := hex.EncodeToString(sum[:])
	a, err := s.Head(t.Context(), "x/y")
	if err != nil {
		t.Fatal(err)
	}
	if a.ETag != want {
		t.Errorf("ETag = %q, want md5 %q", a.ETag, want)
	}
	put, err := s.Put(t.Context(), "x/z", data)
	if err != nil {
		t.Fatal(err)
	}
	if put.ETag != want {
		t.Errorf("stored ETag %q differs from the hash of the same content %q", put.ETag, want)
	}
	if _, err := s.PutIfMatch(t.Context(), "x/y", []byte("new"), want); err != nil {
		t.Errorf("PutIfMatch on a foreign file: %v", err)
	}
}

// The cross-process tests run this test binary again as child processes
// that share one store directory; childEnv tells a child what to do.
const (
	childEnv   = "SHALE_FS_TEST_CHILD" // "create" or "increment"
	dirEnv     = "SHALE_FS_TEST_DIR"
	idEnv      = "SHALE_FS_TEST_ID"
	increments = 25
)

func TestCrossProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	t.Run("PutIfAbsent", func(t *testing.T) {
		const procs = 8
		s, dir := newStore(t)
		outs := runChildren(t, "create", dir, procs)
		var winners []string
		for id, out := range outs {
			switch {
			case strings.Contains(out, "result: won"):
				winners = append(winners, strconv.Itoa(id))
			case !strings.Contains(out, "result: conflict"):
				t.Errorf("child %d: %s", id, out)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("%d of %d processes won PutIfAbsent (%v), want exactly 1", len(winners), procs, winners)
		}
		got, _, err := s.Get(t.Context(), "contended", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != winners[0] {
			t.Errorf("stored %q, but process %s won", got, winners[0])
		}
	})
	t.Run("PutIfMatch", func(t *testing.T) {
		const procs = 4
		s, dir := newStore(t)
		if _, err := s.Put(t.Context(), "counter", []byte("0")); err != nil {
			t.Fatal(err)
		}
		for id, out := range runChildren(t, "increment", dir, procs) {
			if !strings.Contains(out, "result: done") {
				t.Errorf("child %d: %s", id, out)
			}
		}
		got, _, err := s.Get(t.Context(), "counter", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		if want := strconv.Itoa(procs * increments); string(got) != want {
			t.Errorf("counter = %s after %s increments from %d processes; PutIfMatch lost updates", got, want, procs)
		}
	})
}

// runChildren starts n children in mode on the store at dir, releases them
// together, and returns their output.
func runChildren(t *testing.T, mode, dir string, n int) []string {
	t.Helper()
	var (
		wg   sync.WaitGroup
		cmds []*exec.Cmd
		bufs = make([]strings.Builder, n)
	)
	for id := range n {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrossProcessChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+mode, dirEnv+"="+dir, idEnv+"="+strconv.Itoa(id))
		cmd.Stdout, cmd.Stderr = &bufs[id], &bufs[id]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	// The children wait for this file so that they race in earnest, not one
	// process start-up apart.
	if err := os.WriteFile(barrier(dir), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for id, cmd := range cmds {
		wg.Go(func() {
			if err := cmd.Wait(); err != nil {
				bufs[id].WriteString("\nexit: " + err.Error())
			}
		})
	}
	wg.Wait()
	outs := make([]string, n)
	for id := range bufs {
		outs[id] = bufs[id].String()
	}
	return outs
}

// barrier is the start signal for children on the store at dir, kept
// outside the store so that it is not an object.
func barrier(dir string) string { return dir + ".go" }

func TestCrossProcessChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("run as a child process by TestCrossProcess")
	}
	dir, id := os.Getenv(dirEnv), os.Getenv(idEnv)
	s, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(barrier(dir)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never released")
		}
	}
	switch mode {
	case "create":
		_, err := s.PutIfAbsent(t.Context(), "contended", []byte(id))
		switch {
		case err == nil:
			fmt.Println("result: won")
		case errors.Is(err, tier.ErrConflict):
			fmt.Println("result: conflict")
		default:
			t.Fatal(err)
		}
	case "increment":
		for range increments {
			if err := tiertest.Increment(t.Context(), s, "counter"); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Println("result: done")
	default:
		t.Fatalf("unknown mode %q", mode)
	}
}
