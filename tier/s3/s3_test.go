package s3_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/s3"
	"github.com/shalelog/shale/tier/tiertest"
)

// useEndpoint points the AWS SDK at endpoint with the given keys, and at
// nothing from the developer's own AWS configuration. No region is set, so
// the tests also check that a custom endpoint alone is enough.
func useEndpoint(t *testing.T, endpoint, accessKey, secretKey string) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	for _, k := range []string{"AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"} {
		t.Setenv(k, "") // restores the old value after the test
		os.Unsetenv(k)
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ENDPOINT_URL_S3", endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", accessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secretKey)
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
	useEndpoint(t, "http://"+ep.Addr, ep.AccessKey, ep.SecretKey)
	t.Run("bucket root", func(t *testing.T) {
		tiertest.AcceptanceTest(t, open(t, "s3://"+ep.Bucket))
	})
	t.Run("under prefix", func(t *testing.T) {
		tiertest.AcceptanceTest(t, open(t, "s3://"+ep.Bucket+"/shale/data/"))
	})
}

func TestPrefix(t *testing.T) {
	ep := tiertest.StartMinIO(t)
	useEndpoint(t, "http://"+ep.Addr, ep.AccessKey, ep.SecretKey)
	inner := open(t, "s3://"+ep.Bucket+"/p/q")
	if got, want := inner.String(), "s3://"+ep.Bucket+"/p/q/"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if _, err := inner.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	outer := open(t, "s3://"+ep.Bucket)
	if _, err := outer.Head(t.Context(), "p/q/k"); err != nil {
		t.Errorf("key k under prefix p/q is not object p/q/k: %v", err)
	}
}

func TestOpenMissingBucket(t *testing.T) {
	ep := tiertest.StartMinIO(t)
	useEndpoint(t, "http://"+ep.Addr, ep.AccessKey, ep.SecretKey)
	_, err := s3.Open(t.Context(), "s3://no-such-bucket-"+strings.ToLower(ep.Bucket[len(ep.Bucket)-6:])+"/p")
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Open of a missing bucket = %v, want a does-not-exist error", err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	useEndpoint(t, "http://127.0.0.1:1", "key", "secretkey")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := s3.Open(ctx, "s3://bucket")
	if err == nil || !strings.Contains(err.Error(), "cannot reach store at http://127.0.0.1:1") {
		t.Errorf("Open of an unreachable endpoint = %v, want a cannot-reach error", err)
	}
	if ctx.Err() != nil {
		t.Errorf("Open took the whole %v timeout instead of failing", 30*time.Second)
	}
}

func TestOpenBadURL(t *testing.T) {
	for _, u := range []string{"s3://", "s3:///prefix", "s3://%zz"} {
		if _, err := s3.Open(t.Context(), u); err == nil {
			t.Errorf("Open(%q) succeeded, want an error", u)
		}
	}
}
