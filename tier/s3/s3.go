// Package s3 is the s3:// tier backend, on the AWS SDK: s3://BUCKET/PREFIX
// stores key k as the object PREFIX/k in BUCKET.
//
// Configuration comes from the SDK's standard chain (AWS_ACCESS_KEY_ID,
// AWS_REGION, AWS_PROFILE, shared config files, instance roles). A custom
// endpoint (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL) marks an S3-compatible
// server such as MinIO: requests then use path-style addressing, since such
// servers rarely have per-bucket DNS names, and the region defaults to
// us-east-1, so the endpoint and keys are all such a server needs.
//
// Open checks the configuration with one HEAD of the bucket and says what
// is missing: a region, credentials, the bucket (created instead with
// tier.OpenOptions.CreateBucket), or access for the key it found.
//
// Conditional writes use S3's If-None-Match: * and If-Match headers (AWS
// since 2024, MinIO since long before).
package s3

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
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/shalelog/shale/tier"
)

func init() {
	tier.Register("s3", func(ctx context.Context, rawURL string, opts tier.OpenOptions) (tier.Store, error) {
		s, err := OpenWith(ctx, rawURL, opts)
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

// Store is a tier.Store on an S3 bucket.
type Store struct {
	client *awss3.Client
	bucket string
	prefix string // "" or ends in "/"
}

var _ tier.Store = (*Store)(nil)

// Open opens s3://BUCKET/PREFIX and checks that the bucket exists and the
// credentials may use it.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	return OpenWith(ctx, rawURL, tier.OpenOptions{})
}

// OpenWith is Open with options: with CreateBucket, a missing bucket is
// created.
func OpenWith(ctx context.Context, rawURL string, opts tier.OpenOptions) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("open store %q: want s3://BUCKET/PREFIX", rawURL)
	}
	s := &Store{bucket: u.Host, prefix: strings.Trim(u.Path, "/")}
	if s.prefix != "" {
		s.prefix += "/"
	}

	// The SDK's client has no connect or response-header timeout of its
	// own (its dialer waits 30 s); a hung store must fail a request in
	// seconds even where the caller's deadline is long.
	hc := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = tier.DialTimeout }).
		WithTransportOptions(func(tr *http.Transport) {
			tr.TLSHandshakeTimeout = tier.TLSHandshakeTimeout
			tr.ResponseHeaderTimeout = tier.ResponseHeaderTimeout
			// A node reads up to 16 objects and uploads several at once;
			// the SDK's 10 idle connections per host would churn.
			tr.MaxIdleConnsPerHost = 64
		})
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithHTTPClient(hc),
		// The SDK's default, since 2025, adds CRC checksums to every
		// request and validates them on responses; S3-compatible servers
		// that do not return them make it log a warning per read.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	)
	if err != nil {
		return nil, fmt.Errorf("open store %s: load AWS config: %w", s, err)
	}
	// BaseEndpoint is already resolved from AWS_ENDPOINT_URL_S3,
	// AWS_ENDPOINT_URL or the profile when the options run.
	s.client = awss3.NewFromConfig(cfg, func(o *awss3.Options) {
		if o.BaseEndpoint != nil {
			o.UsePathStyle = true
			if o.Region == "" {
				o.Region = "us-east-1"
			}
		}
	})

	// Check what the SDK would only report, less clearly, at the first
	// request: a region to address AWS in, and credentials to sign with.
	if s.client.Options().Region == "" {
		return nil, fmt.Errorf("open store %s: no AWS region: set AWS_REGION (or region in the profile's config), or AWS_ENDPOINT_URL_S3 for an S3-compatible server", s)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("open store %s: no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or run with an instance or task role: %w", s, err)
	}
	if err := s.checkBucket(ctx, creds, opts); err != nil {
		return nil, fmt.Errorf("open store %s: %w", s, err)
	}
	return s, nil
}

// checkBucket makes one cheap request to find a missing bucket, a wrong
// region or credentials the store refuses, and creates a missing bucket if
// asked to.
func (s *Store) checkBucket(ctx context.Context, creds aws.Credentials, opts tier.OpenOptions) error {
	_, err := s.client.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: &s.bucket})
	if err == nil {
		return nil
	}
	// The SDK reports a request that got no response as a ResponseError
	// with status 0.
	var re *smithyhttp.ResponseError
	status := 0
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	switch status {
	case http.StatusNotFound:
		if opts.CreateBucket {
			return s.createBucket(ctx)
		}
		return fmt.Errorf("bucket %s does not exist; create it or pass --create-bucket", s.bucket)
	case http.StatusForbidden:
		return s.denied(ctx, creds)
	case http.StatusMovedPermanently:
		return fmt.Errorf("bucket %s is not in region %s: set AWS_REGION to the bucket's region", s.bucket, s.client.Options().Region)
	case 0:
		// A wrong endpoint or a server that is down.
		return fmt.Errorf("cannot reach store at %s: %w", s.endpoint(), err)
	default:
		return err
	}
}

// denied explains a 403. A HEAD response has no body to say why, so a
// one-key LIST asks again for the error code.
func (s *Store) denied(ctx context.Context, creds aws.Credentials) error {
	who := fmt.Sprintf("access key %s (from %s)", creds.AccessKeyID, creds.Source)
	_, err := s.client.ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: &s.bucket, MaxKeys: aws.Int32(1)})
	var api smithy.APIError
	if err == nil || !errors.As(err, &api) {
		return fmt.Errorf("access to bucket %s denied to %s", s.bucket, who)
	}
	return fmt.Errorf("access to bucket %s denied to %s: %s", s.bucket, who, explainDenied(api.ErrorCode(), api.ErrorMessage()))
}

// explainDenied turns the code of a refused request into what to fix.
func explainDenied(code, msg string) string {
	switch code {
	case "InvalidAccessKeyId":
		return "the store knows no such access key; check AWS_ACCESS_KEY_ID or the profile"
	case "SignatureDoesNotMatch":
		return "the secret key does not match the access key; check AWS_SECRET_ACCESS_KEY or the profile"
	case "AccessDenied":
		return "the credentials are valid but may not use this bucket; check the key's policy"
	}
	return code + ": " + msg
}

func (s *Store) createBucket(ctx context.Context) error {
	in := &awss3.CreateBucketInput{Bucket: &s.bucket}
	// AWS wants the region named, except its default one; an S3-compatible
	// server (a custom endpoint) gets no constraint, which every one takes.
	if o := s.client.Options(); o.BaseEndpoint == nil && o.Region != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(o.Region)}
	}
	_, err := s.client.CreateBucket(ctx, in)
	var api smithy.APIError
	if err != nil && errors.As(err, &api) {
		switch api.ErrorCode() {
		case "BucketAlreadyOwnedByYou":
			return nil // another node created it meanwhile
		case "BucketAlreadyExists":
			return fmt.Errorf("create bucket %s: the name is taken by another account", s.bucket)
		}
	}
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", s.bucket, err)
	}
	return nil
}

func (s *Store) endpoint() string {
	o := s.client.Options()
	if o.BaseEndpoint != nil {
		return *o.BaseEndpoint
	}
	return "AWS S3 in region " + strconv.Quote(o.Region)
}

func (s *Store) String() string { return "s3://" + s.bucket + "/" + s.prefix }

// Close does nothing: the SDK's connections need no release.
func (s *Store) Close() error { return nil }

func (s *Store) Put(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	return s.put(ctx, "put", key, data, nil)
}

func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	return s.put(ctx, "put if absent", key, data, func(in *awss3.PutObjectInput) {
		in.IfNoneMatch = aws.String("*")
	})
}

func (s *Store) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (tier.Attrs, error) {
	a, err := s.put(ctx, "put if match", key, data, func(in *awss3.PutObjectInput) {
		in.IfMatch = aws.String(quote(etag))
	})
	if errors.Is(err, tier.ErrConflict) {
		// AWS answers If-Match on a missing key with 404, but other
		// servers answer 412 as for a changed one. Either way nothing was
		// written, so a Head afterwards tells which error the contract
		// wants without changing what happened.
		if _, herr := s.Head(ctx, key); errors.Is(herr, tier.ErrNotFound) {
			return tier.Attrs{}, fmt.Errorf("put if match %s: %w", key, tier.ErrNotFound)
		}
	}
	return a, err
}

func (s *Store) put(ctx context.Context, op, key string, data []byte, cond func(*awss3.PutObjectInput)) (tier.Attrs, error) {
	in := &awss3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           aws.String(s.prefix + key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
	}
	if cond != nil {
		cond(in)
	}
	// Signing the payload's SHA-256 costs a hash pass over every object;
	// shale checks its own bytes (CRC32C per Arrow batch, JSON that must
	// parse), so the payload goes unsigned, as minio-go's does.
	out, err := s.client.PutObject(ctx, in, awss3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
	if err != nil {
		return tier.Attrs{}, fmt.Errorf("%s %s: %w", op, key, mapErr(err))
	}
	// S3 does not return the modification time of a write; it is left
	// zero rather than guessed from the local clock.
	return tier.Attrs{Key: key, Size: int64(len(data)), ETag: unquote(aws.ToString(out.ETag))}, nil
}

func (s *Store) Get(ctx context.Context, key string, off, length int64) ([]byte, tier.Attrs, error) {
	if off < 0 {
		return nil, tier.Attrs{}, fmt.Errorf("get %s: negative offset %d", key, off)
	}
	if length == 0 {
		a, err := s.Head(ctx, key)
		return []byte{}, a, err
	}
	in := &awss3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)}
	switch {
	case length > 0 && length <= math.MaxInt64-off:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", off, off+length-1))
	case off > 0 || length > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", off))
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == 416 {
			// The range starts at or past the end (every range does on
			// an empty object): no bytes, but the object exists.
			a, err := s.Head(ctx, key)
			return []byte{}, a, err
		}
		return nil, tier.Attrs{}, fmt.Errorf("get %s: %w", key, mapErr(err))
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, tier.Attrs{}, fmt.Errorf("get %s: %w", key, err)
	}
	size := aws.ToInt64(out.ContentLength)
	if in.Range != nil {
		// "bytes 0-9/100": the size of the whole object follows the slash.
		_, total, _ := strings.Cut(aws.ToString(out.ContentRange), "/")
		if size, err = strconv.ParseInt(total, 10, 64); err != nil {
			return nil, tier.Attrs{}, fmt.Errorf("get %s: bad Content-Range %q", key, aws.ToString(out.ContentRange))
		}
	}
	return data, tier.Attrs{
		Key:     key,
		Size:    size,
		ETag:    unquote(aws.ToString(out.ETag)),
		ModTime: aws.ToTime(out.LastModified),
	}, nil
}

func (s *Store) Head(ctx context.Context, key string) (tier.Attrs, error) {
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)})
	if err != nil {
		return tier.Attrs{}, fmt.Errorf("head %s: %w", key, mapErr(err))
	}
	return tier.Attrs{
		Key:     key,
		Size:    aws.ToInt64(out.ContentLength),
		ETag:    unquote(aws.ToString(out.ETag)),
		ModTime: aws.ToTime(out.LastModified),
	}, nil
}

func (s *Store) List(ctx context.Context, prefix, startAfter string, limit int) ([]tier.Attrs, error) {
	in := &awss3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix + prefix)}
	if startAfter != "" {
		in.StartAfter = aws.String(s.prefix + startAfter)
	}
	if limit > 0 {
		in.MaxKeys = aws.Int32(int32(min(limit, 1000))) // 1000 is S3's page size
	}
	var out []tier.Attrs
	for p := awss3.NewListObjectsV2Paginator(s.client, in); p.HasMorePages(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %q after %q: %w", prefix, startAfter, mapErr(err))
		}
		for _, o := range page.Contents {
			out = append(out, tier.Attrs{
				Key:     strings.TrimPrefix(aws.ToString(o.Key), s.prefix),
				Size:    aws.ToInt64(o.Size),
				ETag:    unquote(aws.ToString(o.ETag)),
				ModTime: aws.ToTime(o.LastModified),
			})
			if limit > 0 && len(out) == limit {
				return out, nil
			}
		}
	}
	return out, nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	// S3 deletes a missing key without complaint.
	_, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)})
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, mapErr(err))
	}
	return nil
}

// mapErr turns the S3 errors that callers branch on into tier's sentinels.
func mapErr(err error) error {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		// Other reads of a missing bucket say NoSuchBucket, which must not
		// look like a missing key. A HEAD response has no body, though, and
		// the SDK names every 404 to one NotFound.
		case "NoSuchKey", "NotFound":
			return tier.ErrNotFound
		// 409 ConditionalRequestConflict: another conditional write to the
		// key was in flight and won.
		case "PreconditionFailed", "ConditionalRequestConflict":
			return tier.ErrConflict
		}
	}
	return err
}

// ETags travel quoted in HTTP; tier.Attrs carries them bare, as minio-go and
// the file store do.
func quote(etag string) string   { return `"` + etag + `"` }
func unquote(etag string) string { return strings.Trim(etag, `"`) }
