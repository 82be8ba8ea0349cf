package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shalelog/shale/httpapi"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/tiertest"
)

// TestStoreOutage stops MinIO under a running server: produces fail with
// a clear error in bounded time (no hang, no crash), and once MinIO is
// back the server accepts produces again and everything acknowledged
// before, during and after the outage is there.
func TestStoreOutage(t *testing.T) {
	m := tiertest.StartPrivateMinIO(t)
	se := minioEnv(m.Endpoint(), "outage")
	srv := startServer(t, se, t.TempDir(), nil, "--store-timeout", "3s")
	ctx := context.Background()
	c := httpapi.NewClient(srv.url)
	c.HTTP.Timeout = time.Minute
	if _, err := c.CreateTopic(ctx, httpapi.TopicRequest{Name: "o", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	var acked []string
	produce := func(v string) error {
		_, err := c.Produce(ctx, "o", 0, []record.Record{{Value: []byte(v)}})
		if err == nil {
			acked = append(acked, v)
		}
		return err
	}
	for i := range 5 {
		if err := produce(fmt.Sprint("before-", i)); err != nil {
			t.Fatal(err)
		}
	}
	m.Stop(t)
	start := time.Now()
	err := produce("during")
	if err == nil {
		t.Fatal("produce succeeded with the store stopped")
	}
	if d := time.Since(start); d > 45*time.Second {
		t.Fatalf("produce took %v to fail", d)
	}
	if !strings.Contains(err.Error(), "object store unavailable") || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("produce error does not say what failed: %v", err)
	}
	t.Logf("with the store stopped, produce failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	select {
	case <-srv.exited:
		t.Fatalf("server died during the outage: %s", srv.stderr)
	default:
	}
	m.Start(t)
	var lastErr error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if lastErr = produce("after"); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("produce after the store came back: %v", lastErr)
	}
	log := readAll(t, srv.url, "o", 1)[0]
	have := map[string]bool{}
	for _, r := range log {
		have[string(r.Value)] = true
	}
	for _, v := range acked {
		if !have[v] {
			t.Fatalf("acknowledged %q is missing after the outage; log: %v", v, log)
		}
	}
}
