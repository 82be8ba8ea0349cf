// Package fs is the file:// tier backend, shale's embedded default: each
// object is a regular file under a root directory, at the relative path its
// key names.
//
// Layout of the root:
//
//	.lock   flock(2) target that makes conditional writes atomic across processes
//	.tmp/   objects being written, before they are published by rename or link
//	a/b     the object with key "a/b"
//
// Because a key is a path, a key cannot also be a directory of other keys:
// with "a/b" stored, writing "a/b/c" fails, and the other way round. Other
// filesystem object stores (gocloud fileblob, MinIO's old FS mode) have the
// same limit; S3 does not.
//
// An object's ETag is the hex MD5 of its content, as S3 computes it for a
// single-part upload. It is computed once, while the object is written, and
// kept in the file's user.shale.etag extended attribute so that Head, List and
// PutIfMatch need not read the data; where the filesystem has no user xattrs,
// or a file was placed there by something else, it is computed from the
// content on each use. Files are never modified in place, only replaced, so
// the attribute cannot go stale.
//
// Atomicity: every write stages the object in .tmp/ and fsyncs it first, so a
// crash never leaves a partial object at a key. Publishing is one syscall:
// rename(2) for Put and PutIfMatch, link(2) for PutIfAbsent (it fails with
// EEXIST if the key exists, so of two racing creators exactly one wins, in any
// process). PutIfMatch alone must read then write: it compares the current
// ETag and renames while holding an exclusive flock on .lock. Put, PutIfAbsent
// and Delete hold the same lock shared while they publish or remove: they
// exclude a PutIfMatch but not each other. Without that, a Put or Delete
// landing between PutIfMatch's compare and its rename would be silently
// overwritten or undone, though PutIfMatch had checked against the state
// before it. Readers take no lock, since rename and link swap whole files.
// The lock is held only for the compare and the publishing syscalls, never
// for the fsyncs.
package fs

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shalelog/shale/tier"
)

func init() {
	tier.Register("file", func(ctx context.Context, rawURL string, _ tier.OpenOptions) (tier.Store, error) {
		s, err := Open(ctx, rawURL)
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

const (
	lockName  = ".lock"
	tmpName   = ".tmp"
	etagXattr = "user.shale.etag"

	// staleTmp is the age after which a file left in .tmp/ by a crashed
	// writer is removed at Open. It is far longer than any write takes, so a
	// live writer in another process never loses its staged file.
	staleTmp = time.Hour
)

// Store is a tier.Store on a local directory.
type Store struct {
	root string // absolute
	tmp  string
	lock string
}

var _ tier.Store = (*Store)(nil)

// Open opens the store named by a file:// URL. Everything after "file://" is
// the root path, so file://./data is relative to the working directory and
// file:///var/lib/shale is absolute.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	dir, ok := strings.CutPrefix(rawURL, "file://")
	if !ok || dir == "" {
		return nil, fmt.Errorf("open store %q: want file://PATH", rawURL)
	}
	return New(dir)
}

// New opens the store rooted at dir, creating dir if it does not exist, the
// way a local bucket is created on first use.
func New(dir string) (*Store, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{
		root: root,
		tmp:  filepath.Join(root, tmpName),
		lock: filepath.Join(root, lockName),
	}
	if err := os.MkdirAll(s.tmp, 0o755); err != nil {
		return nil, fmt.Errorf("open store %s: %w", s, err)
	}
	// O_EXCL is not used: every process opens the same .lock, and whichever
	// creates it first is fine.
	f, err := os.OpenFile(s.lock, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", s, err)
	}
	f.Close()
	s.removeStaleTmp()
	return s, nil
}

// removeStaleTmp deletes staged files that a crashed writer left behind.
func (s *Store) removeStaleTmp() {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTmp {
			os.Remove(filepath.Join(s.tmp, e.Name()))
		}
	}
}

func (s *Store) String() string { return "file://" + s.root }

// Close does nothing: the store holds no open files between calls.
func (s *Store) Close() error { return nil }

func (s *Store) Put(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	return s.write(ctx, "put", key, data, unix.LOCK_SH, func(tmp, final string) error {
		return s.publish(key, func() error { return os.Rename(tmp, final) })
	})
}

func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) (tier.Attrs, error) {
	return s.write(ctx, "put if absent", key, data, unix.LOCK_SH, func(tmp, final string) error {
		return s.publish(key, func() error {
			err := os.Link(tmp, final)
			if errors.Is(err, iofs.ErrExist) {
				if fi, serr := os.Lstat(final); serr == nil && fi.IsDir() {
					return err // a collision, explained by publish
				}
				return tier.ErrConflict
			}
			return err
		})
	})
}

func (s *Store) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (tier.Attrs, error) {
	return s.write(ctx, "put if match", key, data, unix.LOCK_EX, func(tmp, final string) error {
		f, cur, err := s.open(key)
		if err != nil {
			return err
		}
		f.Close()
		if cur.ETag != etag {
			return tier.ErrConflict
		}
		return os.Rename(tmp, final)
	})
}

// write stages data, publishes it at key with publish while holding the
// store lock in mode how, and makes the new directory entry durable.
func (s *Store) write(ctx context.Context, op, key string, data []byte, how int, publish func(tmp, final string) error) (tier.Attrs, error) {
	a, tmp, err := s.stage(ctx, key, data)
	if err == nil {
		// Once renamed this fails harmlessly; once linked it leaves the
		// data at key.
		defer os.Remove(tmp)
		err = s.locked(how, func() error { return publish(tmp, s.path(key)) })
	}
	if err == nil {
		err = s.syncParent(key)
	}
	if err != nil {
		return tier.Attrs{}, fmt.Errorf("%s %s: %w", op, key, err)
	}
	return a, nil
}

func (s *Store) Get(ctx context.Context, key string, off, length int64) ([]byte, tier.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return nil, tier.Attrs{}, err
	}
	if off < 0 {
		return nil, tier.Attrs{}, fmt.Errorf("get %s: negative offset %d", key, off)
	}
	f, a, err := s.open(key)
	if err != nil {
		return nil, tier.Attrs{}, fmt.Errorf("get %s: %w", key, err)
	}
	defer f.Close()
	n := max(a.Size-off, 0)
	if length >= 0 {
		n = min(n, length)
	}
	buf := make([]byte, n)
	if m, err := f.ReadAt(buf, off); m < len(buf) {
		return nil, tier.Attrs{}, fmt.Errorf("get %s: %w", key, err)
	}
	return buf, a, nil
}

func (s *Store) Head(ctx context.Context, key string) (tier.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return tier.Attrs{}, err
	}
	f, a, err := s.open(key)
	if err != nil {
		return tier.Attrs{}, fmt.Errorf("head %s: %w", key, err)
	}
	f.Close()
	return a, nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	final := s.path(key)
	removed := false
	err := s.locked(unix.LOCK_SH, func() error {
		if fi, err := os.Lstat(final); err != nil || fi.IsDir() {
			return nil // no such object; a directory is not one
		}
		err := os.Remove(final)
		if errors.Is(err, iofs.ErrNotExist) {
			return nil
		}
		removed = err == nil
		return err
	})
	if err == nil && removed {
		err = s.syncParent(key)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	// Remove directories the delete left empty, so that the key can later
	// be written as an object again. A concurrent writer that created one of
	// them and has not yet published into it retries (see publish).
	for dir := path.Dir(key); dir != "."; dir = path.Dir(dir) {
		if os.Remove(filepath.Join(s.root, filepath.FromSlash(dir))) != nil {
			break
		}
	}
	return nil
}

// List walks the tree in key order: a directory d sorts among its siblings
// as "d/", the prefix of every key under it, so that visiting entries sorted
// that way yields keys in byte order ("a-b" < "a/b" < "a0") and the walk can
// stop at limit and skip subtrees outside prefix or before startAfter.
func (s *Store) List(ctx context.Context, prefix, startAfter string, limit int) ([]tier.Attrs, error) {
	var out []tier.Attrs
	if _, err := s.walk(ctx, "", prefix, startAfter, limit, &out); err != nil {
		return nil, fmt.Errorf("list %q after %q: %w", prefix, startAfter, err)
	}
	return out, nil
}

// walk appends the objects under the directory whose keys start with dir
// ("" for the root, else ending in "/"), and reports whether it reached limit.
func (s *Store) walk(ctx context.Context, dir, prefix, startAfter string, limit int, out *[]tier.Attrs) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	entries, err := os.ReadDir(filepath.Join(s.root, filepath.FromSlash(dir)))
	if errors.Is(err, iofs.ErrNotExist) {
		return false, nil // removed by a concurrent Delete
	}
	if err != nil {
		return false, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		switch {
		case dir == "" && (e.Name() == tmpName || e.Name() == lockName):
		case e.IsDir():
			names = append(names, e.Name()+"/")
		case e.Type().IsRegular():
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	for _, name := range names {
		key := dir + name
		if strings.HasSuffix(name, "/") {
			if !strings.HasPrefix(key, prefix) && !strings.HasPrefix(prefix, key) {
				continue // no key under it has the prefix
			}
			if key < startAfter && !strings.HasPrefix(startAfter, key) {
				continue // every key under it sorts before startAfter
			}
			if done, err := s.walk(ctx, key, prefix, startAfter, limit, out); done || err != nil {
				return done, err
			}
			continue
		}
		if !strings.HasPrefix(key, prefix) || key <= startAfter {
			continue
		}
		f, a, err := s.open(key)
		if errors.Is(err, tier.ErrNotFound) {
			continue // deleted since ReadDir
		}
		if err != nil {
			return false, err
		}
		f.Close()
		*out = append(*out, a)
		if limit > 0 && len(*out) >= limit {
			return true, nil
		}
	}
	return false, nil
}

// stage writes data to a new file in .tmp/ with its ETag attached and
// fsyncs it, so that publishing it is a single rename or link.
func (s *Store) stage(ctx context.Context, key string, data []byte) (tier.Attrs, string, error) {
	if err := ctx.Err(); err != nil {
		return tier.Attrs{}, "", err
	}
	if err := checkKey(key); err != nil {
		return tier.Attrs{}, "", err
	}
	f, err := os.CreateTemp(s.tmp, "obj-*")
	if err != nil {
		return tier.Attrs{}, "", err
	}
	sum := md5.Sum(data)
	etag := hex.EncodeToString(sum[:])
	_, err = f.Write(data)
	if err == nil {
		// Without the attribute, readers hash the content instead, so a
		// filesystem that refuses it costs speed, not correctness.
		_ = unix.Fsetxattr(int(f.Fd()), etagXattr, []byte(etag), 0)
		err = f.Sync()
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = f.Stat()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return tier.Attrs{}, "", err
	}
	return tier.Attrs{Key: key, Size: int64(len(data)), ETag: etag, ModTime: fi.ModTime()}, f.Name(), nil
}

// publish makes a staged object visible at key with op (a rename or a
// link), creating the key's parent directories as needed.
func (s *Store) publish(key string, op func() error) error {
	parent := filepath.Dir(s.path(key))
	created := false
	// A concurrent Delete may remove a parent directory that this call
	// found or created before op runs; each retry recreates it. Losing that
	// race repeatedly takes a stream of deletes under one directory, so a
	// few attempts suffice.
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil {
			break
		}
		if !errors.Is(err, iofs.ErrNotExist) || attempt == 10 {
			return collision(key, err)
		}
		if _, err := os.Stat(parent); errors.Is(err, iofs.ErrNotExist) {
			created = true
		}
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return collision(key, err)
		}
	}
	if created {
		// The new directories' own entries must be durable too. parent is
		// below root, so the walk up ends at root.
		for dir := parent; dir != s.root; {
			dir = filepath.Dir(dir)
			if err := syncDir(dir); err != nil {
				return err
			}
		}
	}
	return nil
}

// collision explains the errors that come from a key naming a path that is
// another key's directory, or from a key's directory being another key.
func collision(key string, err error) error {
	if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) ||
		errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, iofs.ErrExist) {
		return fmt.Errorf("key %q and another key are both an object and a directory, which a filesystem cannot hold: %w", key, err)
	}
	return err
}

// locked runs fn holding the store's flock in mode how (LOCK_SH or
// LOCK_EX). Each call opens .lock afresh because flock locks belong to an
// open file description: goroutines sharing one descriptor would share, not
// contend for, the lock. It is opened without O_CREATE: were .lock deleted
// and recreated, processes could lock different files and exclude nothing,
// so a missing .lock fails writes instead. Waiting for the lock ignores ctx;
// no one holds it for longer than a compare and a rename.
func (s *Store) locked(how int, fn func() error) error {
	f, err := os.Open(s.lock)
	if err != nil {
		return fmt.Errorf("lock store: %w", err)
	}
	defer f.Close() // releases the lock
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("lock store: %w", err)
	}
	return fn()
}

// open opens the object at key and returns its attributes, or
// tier.ErrNotFound if there is none.
func (s *Store) open(key string) (*os.File, tier.Attrs, error) {
	if err := checkKey(key); err != nil {
		return nil, tier.Attrs{}, err
	}
	f, err := os.Open(s.path(key))
	if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, tier.Attrs{}, tier.ErrNotFound
	}
	if err != nil {
		return nil, tier.Attrs{}, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = tier.ErrNotFound // a directory of other keys
	}
	var etag string
	if err == nil {
		etag, err = etagOf(f, fi.Size())
	}
	if err != nil {
		f.Close()
		return nil, tier.Attrs{}, err
	}
	return f, tier.Attrs{Key: key, Size: fi.Size(), ETag: etag, ModTime: fi.ModTime()}, nil
}

// etagOf returns the ETag stored with f, or hashes f's content if it has
// none.
func etagOf(f *os.File, size int64) (string, error) {
	var buf [2 * md5.Size]byte
	n, err := unix.Fgetxattr(int(f.Fd()), etagXattr, buf[:])
	if err == nil && n == len(buf) {
		return string(buf[:]), nil
	}
	h := md5.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (s *Store) path(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key))
}

// syncParent makes the directory entry for key durable.
func (s *Store) syncParent(key string) error {
	return syncDir(filepath.Dir(s.path(key)))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// checkKey rejects keys that are not plain relative paths inside the root,
// or that name the store's own files.
func checkKey(key string) error {
	if key == "" || strings.ContainsRune(key, 0) {
		return fmt.Errorf("invalid key %q", key)
	}
	for _, c := range strings.Split(key, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("invalid key %q: want a relative path without empty, . or .. elements", key)
		}
	}
	if first, _, _ := strings.Cut(key, "/"); first == tmpName || first == lockName {
		return fmt.Errorf("invalid key %q: %s is reserved by the file store", key, first)
	}
	return nil
}
