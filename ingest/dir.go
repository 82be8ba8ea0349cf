package ingest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
)

// The hot directory is the node's own: it creates it (or adopts it while
// empty), marks it with markerName, and ever deletes only files named as
// it names them. A directory that holds anything else and no marker is
// refused, since shale cannot tell whose those files are.
const (
	markerName    = "SHALE-HOT-DIR"
	markerContent = "This directory holds a shale node's hot segments. Shale deletes its own files (shale-*.seg) here at start.\n"
	lockName      = "shale.lock"
	segmentPrefix = "shale-"
	segmentSuffix = ".seg"
)

// segmentName matches the names newSegmentLocked gives segment files; at
// start only these are removed.
var segmentName = regexp.MustCompile(`^shale-[0-9]{8,}\.seg$`)

func segmentFile(dir string, seq int) string {
	return filepath.Join(dir, fmt.Sprintf("%s%08d%s", segmentPrefix, seq, segmentSuffix))
}

// ignorable entries do not make a directory foreign: a fresh ext4 mount
// point holds lost+found.
func ignorable(name string) bool { return name == "lost+found" }

// openDir takes dir for one node: it creates and marks the directory if
// it is missing or empty, refuses a non-empty one without the marker,
// locks it against a second process, and removes the segment files a
// previous process left (uncommitted data was never acknowledged, and
// committed data is in the store). It returns the held lock.
func openDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create hot directory: %w", err)
	}
	marker := filepath.Join(dir, markerName)
	switch fi, err := os.Lstat(marker); {
	case err == nil && fi.Mode().IsRegular():
	case err == nil:
		return nil, fmt.Errorf("hot directory %s: %s is not a regular file", dir, marker)
	case errors.Is(err, fs.ErrNotExist):
		if err := adopt(dir, marker); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("hot directory %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open hot directory lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("hot directory %s is in use by another shale process (give each its own --hot-dir): %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("read hot directory: %w", err)
	}
	for _, e := range entries {
		if segmentName.MatchString(e.Name()) && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				lock.Close()
				return nil, fmt.Errorf("remove old hot segment: %w", err)
			}
		}
	}
	return lock, nil
}

// adopt marks an empty directory as a hot directory, durably, so that a
// restart finds it marked.
func adopt(dir, marker string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read hot directory: %w", err)
	}
	for _, e := range entries {
		if !ignorable(e.Name()) {
			return fmt.Errorf("hot directory %s is not empty and has no %s file, so it is not a shale hot directory (found %q): give shale an empty or new directory of its own", dir, markerName, e.Name())
		}
	}
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("mark hot directory: %w", err)
	}
	_, err = f.WriteString(markerContent)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("mark hot directory: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
