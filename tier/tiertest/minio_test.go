package tiertest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/shalelog/shale/tier/tiertest"
)

// TestPrivateMinIORestart checks that a private server goes away on Stop,
// refusing connections rather than hanging them, and comes back on Start
// at the same address with its bucket and objects.
func TestPrivateMinIORestart(t *testing.T) {
	m := tiertest.StartPrivateMinIO(t)
	ep := m.Endpoint()
	client := newClient(t, ep, 0)
	const key = "restart/object"
	want := []byte("written before the stop")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := client.PutObject(ctx, ep.Bucket, key, bytes.NewReader(want), int64(len(want)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}

	m.Stop(t)
	m.Stop(t) // a second Stop does nothing
	// minio-go retries refused connections with backoff by default; a
	// client that tries once shows what the store does, not the client.
	once := newClient(t, ep, 1)
	start := time.Now()
	stopped, cancelStopped := context.WithTimeout(ctx, 10*time.Second)
	defer cancelStopped()
	_, err := once.StatObject(stopped, ep.Bucket, key, minio.StatObjectOptions{})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("stat %s on a stopped server after %v: got %v, want a refused connection", key, time.Since(start), err)
	}

	m.Start(t)
	if got := m.Endpoint(); got != ep {
		t.Fatalf("endpoint after restart = %+v, want %+v", got, ep)
	}
	// The client from before the stop still works: only its pooled
	// connections died with the server.
	obj, err := client.GetObject(ctx, ep.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get %s after restart: %v", key, err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("read %s after restart: %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s after restart = %q, want %q", key, got, want)
	}
}

// TestPrivateMinIOStartWaitsForPort checks that Start outlasts a port that
// is briefly taken when the server restarts.
func TestPrivateMinIOStartWaitsForPort(t *testing.T) {
	m := tiertest.StartPrivateMinIO(t)
	ep := m.Endpoint()
	m.Stop(t)
	l, err := net.Listen("tcp", ep.Addr)
	if err != nil {
		t.Fatalf("take %s: %v", ep.Addr, err)
	}
	release := time.AfterFunc(time.Second, func() { l.Close() })
	defer release.Stop()
	defer l.Close()

	m.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ok, err := newClient(t, ep, 0).BucketExists(ctx, ep.Bucket)
	if err != nil || !ok {
		t.Fatalf("bucket %s exists after restart = %v, %v; want true, nil", ep.Bucket, ok, err)
	}
}

// newClient returns a client for ep that makes at most maxRetries attempts
// per request, or minio-go's default number if maxRetries is 0.
func newClient(t *testing.T, ep tiertest.Endpoint, maxRetries int) *minio.Client {
	t.Helper()
	c, err := minio.New(ep.Addr, &minio.Options{
		Creds:      credentials.NewStaticV4(ep.AccessKey, ep.SecretKey, ""),
		MaxRetries: maxRetries,
	})
	if err != nil {
		t.Fatalf("minio client: %v", err)
	}
	return c
}
