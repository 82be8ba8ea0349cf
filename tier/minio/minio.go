// Package minio is the minio:// tier backend, on minio-go:
// minio://[USER:PASSWORD@]HOST:PORT/BUCKET/PREFIX stores key k as the object
// PREFIX/k in BUCKET. It speaks plain HTTP unless the URL has ?secure=true.
//
// Credentials come from the URL, else MINIO_ROOT_USER and
// MINIO_ROOT_PASSWORD, else AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, so
// a server started locally and the shell that started it need no extra
// configuration. Open checks the bucket with one HEAD and says what is
// missing: credentials, the bucket (created instead with
// tier.OpenOptions.CreateBucket), or access for the key it found.
package minio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	miniogo "github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/shalelog/shale/tier"
)

func init() {
	tier.Register("minio", func(ctx context.Context, rawURL string, opts tier.OpenOptions) (tier.Store, error) {
		s, err := OpenWith(ctx, rawURL, opts)
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

// Store is a tier.Store on a MinIO (or other S3-compatible) bucket.
type Store struct {
	client *miniogo.Client
	host   string
	secure bool
	bucket string
	prefix string // "" or ends in "/"
}

var _ tier.Store = (*Store)(nil)

// Open opens minio://HOST:PORT/BUCKET/PREFIX and checks that the bucket
// exists and the credentials may use it.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	return OpenWith(ctx, rawURL, tier.OpenOptions{})
}

// OpenWith is Open with options: with CreateBucket, a missing bucket is
// created.
func OpenWith(ctx context.Context, rawURL string, opts tier.OpenOptions) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "minio" || u.Host == "" {
		return nil, fmt.Errorf("open store: want minio://HOST:PORT/BUCKET/PREFIX, got %q", redact(rawURL))
	}
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	s := &Store{host: u.Host, bucket: bucket, prefix: strings.Trim(prefix, "/")}
	if s.prefix != "" {
		s.prefix += "/"
	}
	if v := u.Query().Get("secure"); v != "" {
		if s.secure, err = strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("open store %s: secure=%q: %w", s, v, err)
		}
	}
	if s.bucket == "" {
		return nil, fmt.Errorf("open store %s: no bucket in URL", s)
	}

	user, password, source := os.Getenv("MINIO_ROOT_USER"), os.Getenv("MINIO_ROOT_PASSWORD"), "MINIO_ROOT_USER"
	if user == "" {
		user, password, source = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), "AWS_ACCESS_KEY_ID"
	}
	if u.User != nil {
		user, source = u.User.Username(), "the URL"
		password, _ = u.User.Password()
	}
	// Without keys minio-go sends anonymous requests, which the server
	// answers with a bare "Access Denied" that hides the cause.
	if user == "" || password == "" {
		return nil, fmt.Errorf("open store %s: no credentials: put USER:PASSWORD@ in the URL, or set MINIO_ROOT_USER/MINIO_ROOT_PASSWORD or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", s)
	}
	tr, err := miniogo.DefaultTransport(s.secure)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", s, err)
	}
	// minio-go's transport has no response-header timeout and a 30 s
	// dial timeout; a hung store must fail a request in seconds even where
	// the caller's deadline is long.
	tr.DialContext = (&net.Dialer{Timeout: tier.DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = tier.TLSHandshakeTimeout
	tr.ResponseHeaderTimeout = tier.ResponseHeaderTimeout
	s.client, err = miniogo.New(s.host, &miniogo.Options{
		Creds:     credentials.NewStaticV4(user, password, ""),
		Secure:    s.secure,
		Transport: tr,
		// A few quick retries: shale's callers retry with their own
		// deadlines, and the SDK's default of 10 hides the cause of an
		// outage behind a context timeout.
		MaxRetries: 3,
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", s, err)
	}
	if err := s3utils.CheckValidBucketName(s.bucket); err != nil {
		return nil, fmt.Errorf("open store %s: invalid bucket name %q: %w", s, s.bucket, err)
	}
	if err := s.checkBucket(ctx, user, source, opts); err != nil {
		return nil, fmt.Errorf("open store %s: %w", s, err)
	}
	return s, nil
}

// checkBucket makes one cheap request to find a missing bucket or
// credentials the server refuses, and creates a missing bucket if asked to.
func (s *Store) checkBucket(ctx context.Context, user, source string, opts tier.OpenOptions) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	var er miniogo.ErrorResponse
	switch {
	case err != nil && errors.As(err, &er) && er.StatusCode == http.StatusForbidden:
		return s.denied(ctx, fmt.Sprintf("access key %s (from %s)", user, source))
	case err != nil && errors.As(err, &er):
		return err
	case err != nil:
		return fmt.Errorf("cannot reach store at %s: %w", s.client.EndpointURL(), err)
	case !ok && opts.CreateBucket:
		err := s.client.MakeBucket(ctx, s.bucket, miniogo.MakeBucketOptions{})
		if err != nil && miniogo.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" { // another node created it meanwhile
			return fmt.Errorf("create bucket %s: %w", s.bucket, err)
		}
	case !ok:
		return fmt.Errorf("bucket %s does not exist; create it or pass --create-bucket", s.bucket)
	}
	return nil
}

// denied explains a 403. A HEAD response has no body to say why, so a
// one-key LIST asks again for the error code.
func (s *Store) denied(ctx context.Context, who string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the listing goroutine after the first answer
	var err error
	for info := range s.client.ListObjects(ctx, s.bucket, miniogo.ListObjectsOptions{MaxKeys: 1}) {
		err = info.Err
		break
	}
	var er miniogo.ErrorResponse
	if err == nil || !errors.As(err, &er) {
		return fmt.Errorf("access to bucket %s denied to %s", s.bucket, who)
	}
	var why string
	switch er.Code {
	case "InvalidAccessKeyId":
		why = "the server knows no such access key"
	case "SignatureDoesNotMatch":
		why = "the password (secret key) does not match the access key"
	case "AccessDenied":
		why = "the credentials are valid but may not use this bucket; check the user's policy"
	default:
		why = er.Code + ": " + er.Message
	}
	return fmt.Errorf("access to bucket %s denied to %s: %s", s.bucket, who, why)
}

// String returns the store's URL without credentials.
func (s *Store) String() string {
	u := "minio://" + s.host + "/" + s.bucket + "/" + s.prefix
	if s.secure {
		u += "?secure=true"
	}
	return u
}

// Close does nothing: minio-go's connections need no release.
func (s *Store) Close() error { return nil }

func (s *Store) Put(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	return s.put(ctx, "put", key, data, miniogo.PutObjectOptions{})
}

func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	var opts miniogo.PutObjectOptions
	opts.SetMatchETagExcept("*") // If-None-Match: *
	return s.put(ctx, "put if absent", key, data, opts)
}

func (s *Store) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (tier.Attrs, error) {
	var opts miniogo.PutObjectOptions
	opts.SetMatchETag(etag) // If-Match: "etag"
	a, err := s.put(ctx, "put if match", key, data, opts)
	if errors.Is(err, tier.ErrConflict) {
		// MinIO answers If-Match on a missing key with 404, but other
		// servers answer 412 as for a changed one. Either way nothing was
		// written, so a Head afterwards tells which error the contract
		// wants without changing what happened.
		if _, herr := s.Head(ctx, key); errors.Is(herr, tier.ErrNotFound) {
			return tier.Attrs{}, fmt.Errorf("put if match %s: %w", key, tier.ErrNotFound)
		}
	}
	return a, err
}

func (s *Store) put(ctx context.Context, op, key string, data []byte, opts miniogo.PutObjectOptions) (tier.Attrs, error) {
	// minio-go switches to multipart uploads above 16 MiB; shale's objects
	// (64 MiB at most) fit one PUT, which is one request for the server to
	// check the condition and write, and none to clean up after a failure.
	opts.DisableMultipart = true
	// Signing the payload hash costs a SHA-256 pass over every object (a
	// seventh of a node's CPU at full ingest). Shale checks its own bytes:
	// CRC32C per Arrow batch and per hot frame, and JSON that must parse.
	opts.DisableContentSha256 = true
	info, err := s.client.PutObject(ctx, s.bucket, s.prefix+key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		return tier.Attrs{}, fmt.Errorf("%s %s: %w", op, key, mapErr(err))
	}
	// The server does not return the modification time of a write; it is
	// left zero rather than guessed from the local clock.
	return tier.Attrs{Key: key, Size: int64(len(data)), ETag: info.ETag}, nil
}

func (s *Store) Get(ctx context.Context, key string, off, length int64) ([]byte, tier.Attrs, error) {
	if off < 0 {
		return nil, tier.Attrs{}, fmt.Errorf("get %s: negative offset %d", key, off)
	}
	if length == 0 {
		a, err := s.Head(ctx, key)
		return []byte{}, a, err
	}
	var opts miniogo.GetObjectOptions
	ranged := off > 0 || length > 0
	if ranged {
		// Set the header directly: SetRange reads (0, 0) as "whole object"
		// and (0, -n) as "last n bytes".
		end := ""
		if length > 0 && length <= math.MaxInt64-off {
			end = strconv.FormatInt(off+length-1, 10)
		}
		opts.Set("Range", fmt.Sprintf("bytes=%d-%s", off, end))
	}
	core := miniogo.Core{Client: s.client}
	body, info, hdr, err := core.GetObject(ctx, s.bucket, s.prefix+key, opts)
	if err != nil {
		var er miniogo.ErrorResponse
		if errors.As(err, &er) && er.Code == "InvalidRange" {
			// The range starts at or past the end (every range does on
			// an empty object): no bytes, but the object exists.
			a, err := s.Head(ctx, key)
			return []byte{}, a, err
		}
		return nil, tier.Attrs{}, fmt.Errorf("get %s: %w", key, mapErr(err))
	}
	defer body.Close()
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, tier.Attrs{}, fmt.Errorf("get %s: %w", key, err)
	}
	a := s.attrs(info)
	if ranged {
		// info.Size is the range's; "bytes 0-9/100" ends with the object's.
		_, total, _ := strings.Cut(hdr.Get("Content-Range"), "/")
		if a.Size, err = strconv.ParseInt(total, 10, 64); err != nil {
			return nil, tier.Attrs{}, fmt.Errorf("get %s: bad Content-Range %q", key, hdr.Get("Content-Range"))
		}
	}
	return data, a, nil
}

func (s *Store) Head(ctx context.Context, key string) (tier.Attrs, error) {
	info, err := s.client.StatObject(ctx, s.bucket, s.prefix+key, miniogo.StatObjectOptions{})
	if err != nil {
		return tier.Attrs{}, fmt.Errorf("head %s: %w", key, mapErr(err))
	}
	return s.attrs(info), nil
}

func (s *Store) List(ctx context.Context, prefix, startAfter string, limit int) ([]tier.Attrs, error) {
	opts := miniogo.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}
	if startAfter != "" {
		opts.StartAfter = s.prefix + startAfter
	}
	if limit > 0 {
		opts.MaxKeys = min(limit, 1000) // 1000 is S3's page size
	}
	var out []tier.Attrs
	for info := range s.client.ListObjectsIter(ctx, s.bucket, opts) {
		if info.Err != nil {
			return nil, fmt.Errorf("list %q after %q: %w", prefix, startAfter, mapErr(info.Err))
		}
		out = append(out, s.attrs(info))
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	// S3 deletes a missing key without complaint.
	if err := s.client.RemoveObject(ctx, s.bucket, s.prefix+key, miniogo.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", key, mapErr(err))
	}
	return nil
}

func (s *Store) attrs(info miniogo.ObjectInfo) tier.Attrs {
	return tier.Attrs{
		Key:     strings.TrimPrefix(info.Key, s.prefix),
		Size:    info.Size,
		ETag:    strings.Trim(info.ETag, `"`),
		ModTime: info.LastModified,
	}
}

// mapErr turns the S3 errors that callers branch on into tier's sentinels.
func mapErr(err error) error {
	var er miniogo.ErrorResponse
	if !errors.As(err, &er) {
		return err
	}
	switch er.Code {
	// Other reads of a missing bucket say NoSuchBucket, which must not look
	// like a missing key. A HEAD response has no body, though, and minio-go
	// names every 404 to one NoSuchKey.
	case "NoSuchKey", "NotFound":
		return tier.ErrNotFound
	// 409 ConditionalRequestConflict: another conditional write to the key
	// was in flight and won.
	case "PreconditionFailed", "ConditionalRequestConflict":
		return tier.ErrConflict
	}
	return err
}

// redact hides the password in a URL that failed to parse.
func redact(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		return u.Redacted()
	}
	if scheme, rest, ok := strings.Cut(rawURL, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			return scheme + "://xxxxx@" + rest[at+1:]
		}
	}
	return rawURL
}
