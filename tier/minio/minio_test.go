package minio_test

import (
	"context"
	"strings"
	"testing"
	"time"

	miniogo "github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

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
	if want := "bucket no-such-bucket does not exist; create it or pass --create-bucket"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Open of a missing bucket = %v, want %q", err, want)
	}
}

func TestOpenCreateBucket(t *testing.T) {
	ep := tiertest.StartMinIO(t)
	ep.Bucket += "-created"
	s, err := tier.OpenWith(t.Context(), url(ep, "p"), tier.OpenOptions{CreateBucket: true})
	if err != nil {
		t.Fatalf("OpenWith CreateBucket: %v", err)
	}
	t.Cleanup(func() {
		// The bucket must be empty to go, and the shared server outlives
		// the test.
		s.Delete(context.Background(), "k")
		c, _ := miniogo.New(ep.Addr, &miniogo.Options{Creds: credentials.NewStaticV4(ep.AccessKey, ep.SecretKey, "")})
		c.RemoveBucket(context.Background(), ep.Bucket)
	})
	if _, err := s.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("Put in the created bucket: %v", err)
	}
	// Now it exists: a plain Open works, and creating again is no error
	// (another node may have won the race to create it).
	open(t, url(ep, "p"))
	if _, err := tier.OpenWith(t.Context(), url(ep, "p"), tier.OpenOptions{CreateBucket: true}); err != nil {
		t.Fatalf("OpenWith CreateBucket of an existing bucket: %v", err)
	}
}

func TestOpenCredentialErrors(t *testing.T) {
	ep := tiertest.StartMinIO(t)
	for _, k := range []string{"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		t.Setenv(k, "")
	}
	bare := "minio://" + ep.Addr + "/" + ep.Bucket
	withKeys := func(user, password string) string {
		return "minio://" + user + ":" + password + "@" + ep.Addr + "/" + ep.Bucket
	}
	for _, tc := range []struct {
		name, url, want string
	}{
		{"none", bare, "no credentials: put USER:PASSWORD@ in the URL, or set MINIO_ROOT_USER/MINIO_ROOT_PASSWORD"},
		{"unknown key", withKeys("nobody", "whatever-secret"), "denied to access key nobody (from the URL): the server knows no such access key"},
		{"wrong password", withKeys(ep.AccessKey, "wrong-secret"), "denied to access key " + ep.AccessKey + " (from the URL): the password (secret key) does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := minio.Open(t.Context(), tc.url)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "wrong-secret") || strings.Contains(err.Error(), "whatever-secret") {
				t.Errorf("error %q reveals the password", err)
			}
		})
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

// A bucket name S3 does not allow is named as such, not reported as an
// unreachable store.
func TestOpenInvalidBucketName(t *testing.T) {
	t.Setenv("MINIO_ROOT_USER", "u")
	t.Setenv("MINIO_ROOT_PASSWORD", "password")
	_, err := minio.Open(t.Context(), "minio://127.0.0.1:1/b5/p")
	if err == nil || !strings.Contains(err.Error(), `invalid bucket name "b5"`) {
		t.Fatalf("Open with bucket b5: %v, want an invalid bucket name error", err)
	}
}

// A server that accepts connections and never answers fails Open within the
// response-header timeout, not the caller's much longer deadline.
func TestOpenSilentServer(t *testing.T) {
	addr := tiertest.SilentServer(t)
	defer func(d time.Duration) { tier.ResponseHeaderTimeout = d }(tier.ResponseHeaderTimeout)
	tier.ResponseHeaderTimeout = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := minio.Open(ctx, "minio://key:secretkey@"+addr+"/bucket")
	if err == nil || !strings.Contains(err.Error(), "cannot reach store") || ctx.Err() != nil {
		t.Errorf("Open of a silent server = %v (context: %v), want a cannot-reach error before the deadline", err, ctx.Err())
	}
}
