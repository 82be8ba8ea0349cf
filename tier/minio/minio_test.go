package minio_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/minio"
	"github.com/shalelog/shale/tier/tiertest"
)

// url names the bucket of ep, with its credentials in the URL.
func url(ep tiertest.Endpoint, prefix string) string {
	return "minio://" + ep.AccessKey + ":" + ep.SecretKey + "@" + ep.Addr + "/" + ep.Bucket + "/" + prefix
}

func open(t *testing.T, rawURL string) tier.Store {
	t.Helper()
	s, err := tier.Open(t.Context(), rawURL)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestAcceptance(t *testing.T) {
	ep := tiertest.StartMinIO(t)
	t.Run("bucket root", func(t *testing.T) {
		tiertest.AcceptanceTest(t, open(t, url(ep, "")))
	})
	t.Run("under prefix", func(t *testing.T) {
		tiertest.AcceptanceTest(t, open(t, url(ep, "shale/data/")))
	})
}

func TestPrefix(t *testing.T) {
	ep := tiertest.StartMinIO(t)
	inner := open(t, url(ep, "p/q"))
	if _, err := inner.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := open(t, url(ep, "")).Head(t.Context(), "p/q/k"); err != nil {
		t.Errorf("key k under prefix p/q is not object p/q/k: %v", err)
	}
}

func TestCredentials(t *testing.T) {
	ep := tiertest.StartMinIO(t)
	bare := "minio://" + ep.Addr + "/" + ep.Bucket
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"MINIO_ROOT", map[string]string{"MINIO_ROOT_USER": ep.AccessKey, "MINIO_ROOT_PASSWORD": ep.SecretKey}},
		{"AWS", map[string]string{"AWS_ACCESS_KEY_ID": ep.AccessKey, "AWS_SECRET_ACCESS_KEY": ep.SecretKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
				t.Setenv(k, tc.env[k])
			}
			if _, err := open(t, bare).Put(t.Context(), "k", []byte("v")); err != nil {
				t.Errorf("Put with credentials from the environment: %v", err)
			}
		})
	}
	t.Run("URL over environment", func(t *testing.T) {
		t.Setenv("MINIO_ROOT_USER", "wrong")
		t.Setenv("MINIO_ROOT_PASSWORD", "wrong-password")
		s := open(t, url(ep, ""))
		if strings.Contains(s.String(), ep.SecretKey) {
			t.Errorf("String() = %q reveals the password", s)
		}
		if _, err := s.Put(t.Context(), "k", []byte("v")); err != nil {
			t.Errorf("Put with credentials from the URL: %v", err)
		}
	})
}

func TestOpenMissingBucket(t *testing.T) {
	ep := tiertest.StartMinIO(t)
	ep.Bucket = "no-such-bucket"
	_, err := minio.Open(t.Context(), url(ep, "p"))
	if err == nil || !strings.Contains(err.Error(), "bucket no-such-bucket does not exist") {
		t.Errorf("Open of a missing bucket = %v, want a does-not-exist error", err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := minio.Open(ctx, "minio://key:secretkey@127.0.0.1:1/bucket")
	if err == nil || !strings.Contains(err.Error(), "cannot reach store at http://127.0.0.1:1") {
		t.Errorf("Open of an unreachable endpoint = %v, want a cannot-reach error", err)
	}
	if ctx.Err() != nil {
		t.Errorf("Open took the whole %v timeout instead of failing", 30*time.Second)
	}
}

func TestOpenBadURL(t *testing.T) {
	for _, u := range []string{"minio://", "minio://host:9000", "minio://host:9000/", "minio://host:9000/b?secure=maybe"} {
		if _, err := minio.Open(t.Context(), u); err == nil {
			t.Errorf("Open(%q) succeeded, want an error", u)
		}
	}
}
