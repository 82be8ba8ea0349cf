// Package tier defines the object store that holds all of shale's durable
// state, and opens a backend by URL.
//
// Consistency assumed of every backend: strong read-after-write and
// list-after-write consistency (AWS S3 since 2020, MinIO, a local
// filesystem), and atomic conditional writes: of two concurrent
// PutIfAbsent calls on one key exactly one succeeds, and PutIfMatch succeeds
// only while the object still has the given ETag. Shale's commit protocol is
// built on nothing else: no leader, no lock service, no database.
package tier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

var (
	// ErrNotFound is returned by Get and Head for a key that does not exist,
	// and by PutIfMatch when the object to replace is gone.
	ErrNotFound = errors.New("object not found")
	// ErrConflict is returned by a conditional write that lost: PutIfAbsent
	// on a key that exists, PutIfMatch on an object whose ETag changed. The
	// store is unchanged by the losing call.
	ErrConflict = errors.New("conditional write conflict")
)

// CorruptError reports bytes that do not decode: a checksum or length
// mismatch, a torn or truncated file, or data that breaks its format's
// rules. What names the kind of thing ("object", "hot segment", "commit
// record"), Key the object key or file, and Offset the byte where the bad
// part starts.
type CorruptError struct {
	What   string
	Key    string
	Offset int64
	Err    error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("corrupt %s %s at byte %d: %v", e.What, e.Key, e.Offset, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Attrs describes a stored object.
type Attrs struct {
	Key     string
	Size    int64
	ETag    string // opaque; changes whenever the content is replaced
	ModTime time.Time
}

// Store is a flat namespace of immutable-by-convention objects.
//
// Durability: when Put, PutIfAbsent or PutIfMatch returns nil, the whole
// object is durable and visible to every later Get, Head and List from any
// process. A write that returns an error may or may not have taken effect
// (a network failure after the store committed looks the same as one
// before), but it never leaves a partial object: readers see either the old
// state or the whole new object. Callers that must know which resolve the
// ambiguity by reading the key back.
//
// All methods are safe for concurrent use, from any number of goroutines and
// processes. Keys are '/'-separated paths without a leading slash.
type Store interface {
	// Put writes data at key unconditionally, replacing any existing object.
	Put(ctx context.Context, key string, data []byte) (Attrs, error)
	// PutIfAbsent writes data at key only if no object exists there;
	// otherwise it returns ErrConflict and leaves the existing object.
	PutIfAbsent(ctx context.Context, key string, data []byte) (Attrs, error)
	// PutIfMatch replaces the object at key only if its current ETag equals
	// etag; otherwise it returns ErrConflict (or ErrNotFound if the object
	// is gone) and changes nothing.
	PutIfMatch(ctx context.Context, key string, data []byte, etag string) (Attrs, error)
	// Get reads length bytes of the object at key starting at off; a
	// negative length reads to the end. Reading past the end returns the
	// bytes that exist. A missing key returns ErrNotFound.
	Get(ctx context.Context, key string, off, length int64) ([]byte, Attrs, error)
	// Head returns the attributes of the object at key, or ErrNotFound.
	Head(ctx context.Context, key string) (Attrs, error)
	// List returns up to limit objects whose keys start with prefix and sort
	// strictly after startAfter, in ascending byte order of key. limit <= 0
	// means no limit. Callers page by passing the last key they saw.
	List(ctx context.Context, prefix, startAfter string, limit int) ([]Attrs, error)
	// Delete removes the object at key. Deleting a missing key is not an
	// error.
	Delete(ctx context.Context, key string) error
	// String names the store for logs and errors (its URL without secrets).
	String() string
	// Close releases the backend's resources.
	Close() error
}

// Connection timeouts of the remote backends' HTTP clients. Callers bound
// each call with their context (derived from --store-timeout); these bound
// the steps of a request on their own, so that an endpoint that is down or
// accepts connections and never answers fails a request in seconds even
// where a context has a long deadline, and a wrong address fails Open
// quickly. ResponseHeaderTimeout counts from the end of the request body,
// so it does not limit the upload of a large object. They are read when a
// store is opened; tests shorten them.
var (
	DialTimeout           = 5 * time.Second
	TLSHandshakeTimeout   = 10 * time.Second
	ResponseHeaderTimeout = 30 * time.Second
)

// OpenOptions are settings of opening a store that are not part of its
// URL.
type OpenOptions struct {
	// CreateBucket creates the bucket a remote store's URL names if it does
	// not exist. Without it, opening a store whose bucket is missing fails
	// with an error that says so. (A file:// store always creates its
	// directory, as before.)
	CreateBucket bool
}

// Opener opens a Store from a URL. Backends register one per scheme so that
// this package does not import the SDKs.
type Opener func(ctx context.Context, rawURL string, opts OpenOptions) (Store, error)

var openers = map[string]Opener{}

// Register makes a backend available to Open under scheme. It is called from
// the backends' init functions.
func Register(scheme string, o Opener) { openers[scheme] = o }

// Open opens the store named by rawURL, such as file:///var/lib/shale,
// s3://bucket/prefix or minio://host:9000/bucket/prefix. A remote store is
// checked at open (its bucket exists and the credentials may read it), so
// that a misconfigured store fails at start with an error naming what is
// missing rather than at the first request.
func Open(ctx context.Context, rawURL string) (Store, error) {
	return OpenWith(ctx, rawURL, OpenOptions{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, rawURL string, opts OpenOptions) (Store, error) {
	scheme, _, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, fmt.Errorf("open store %q: want a URL such as file:///path, s3://bucket/prefix or minio://host:port/bucket", rawURL)
	}
	o, ok := openers[scheme]
	if !ok {
		return nil, fmt.Errorf("open store %q: unknown scheme %q (want file, s3 or minio)", rawURL, scheme)
	}
	return o(ctx, rawURL, opts)
}
