package s3_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

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
	bucket := "no-such-bucket-" + strings.ToLower(ep.Bucket[len(ep.Bucket)-6:])
	_, err := s3.Open(t.Context(), "s3://"+bucket+"/p")
	if want := "bucket " + bucket + " does not exist; create it or pass --create-bucket"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Open of a missing bucket = %v, want %q", err, want)
	}
}

func TestOpenCreateBucket(t *testing.T) {
	ep := tiertest.StartMinIO(t)
	useEndpoint(t, "http://"+ep.Addr, ep.AccessKey, ep.SecretKey)
	bucket := ep.Bucket + "-created"
	s, err := tier.OpenWith(t.Context(), "s3://"+bucket+"/p", tier.OpenOptions{CreateBucket: true})
	if err != nil {
		t.Fatalf("OpenWith CreateBucket: %v", err)
	}
	t.Cleanup(func() {
		// The bucket must be empty to go, and the shared server outlives
		// the test.
		s.Delete(context.Background(), "k")
		c, _ := minio.New(ep.Addr, &minio.Options{Creds: credentials.NewStaticV4(ep.AccessKey, ep.SecretKey, "")})
		c.RemoveBucket(context.Background(), bucket)
	})
	if _, err := s.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("Put in the created bucket: %v", err)
	}
	open(t, "s3://"+bucket+"/p")
	if _, err := tier.OpenWith(t.Context(), "s3://"+bucket, tier.OpenOptions{CreateBucket: true}); err != nil {
		t.Fatalf("OpenWith CreateBucket of an existing bucket: %v", err)
	}
}

func TestOpenCredentialErrors(t *testing.T) {
	ep := tiertest.StartMinIO(t)
	for _, tc := range []struct {
		name, key, secret, want string
	}{
		{"none", "", "", "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"},
		{"unknown key", "nobody", "whatever-secret", "denied to access key nobody (from EnvConfigCredentials): the store knows no such access key"},
		{"wrong secret", ep.AccessKey, "wrong-secret", "denied to access key " + ep.AccessKey + " (from EnvConfigCredentials): the secret key does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			useEndpoint(t, "http://"+ep.Addr, tc.key, tc.secret)
			if tc.key == "" {
				os.Unsetenv("AWS_ACCESS_KEY_ID")
				os.Unsetenv("AWS_SECRET_ACCESS_KEY")
			}
			_, err := s3.Open(t.Context(), "s3://"+ep.Bucket)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "-secret") {
				t.Errorf("error %q reveals the secret", err)
			}
		})
	}
}

// With no custom endpoint, AWS needs a region; the error says where to
// set it.
func TestOpenNoRegion(t *testing.T) {
	useEndpoint(t, "", "key", "secretkey")
	os.Unsetenv("AWS_ENDPOINT_URL_S3")
	_, err := s3.Open(t.Context(), "s3://bucket")
	if want := "no AWS region: set AWS_REGION"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Open without a region = %v, want %q", err, want)
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

// A server that accepts connections and never answers fails Open within the
// response-header timeout, not the caller's much longer deadline.
func TestOpenSilentServer(t *testing.T) {
	addr := tiertest.SilentServer(t)
	defer func(d time.Duration) { tier.ResponseHeaderTimeout = d }(tier.ResponseHeaderTimeout)
	tier.ResponseHeaderTimeout = 100 * time.Millisecond
	useEndpoint(t, "http://"+addr, "key", "secretkey")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := s3.Open(ctx, "s3://bucket")
	if err == nil || !strings.Contains(err.Error(), "cannot reach store") || ctx.Err() != nil {
		t.Errorf("Open of a silent server = %v (context: %v), want a cannot-reach error before the deadline", err, ctx.Err())
	}
}
