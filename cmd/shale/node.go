package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/tier"
	_ "github.com/shalelog/shale/tier/fs"
	_ "github.com/shalelog/shale/tier/minio"
	"github.com/shalelog/shale/tier/object"
	_ "github.com/shalelog/shale/tier/s3"
)

const storeHelp = "object store URL: file://DIR, s3://BUCKET/PREFIX (AWS chain: AWS_ENDPOINT_URL_S3, AWS_REGION, ...) or minio://HOST:PORT/BUCKET/PREFIX"

// nodeFlags are the flags of anything that runs a node: serve, bench, and
// client commands given --store. Their defaults are shale.DefaultOptions.
type nodeFlags struct {
	f          *flags
	store      *string
	hotDir     *string
	rollBytes  *int64
	rollAge    *time.Duration
	cacheBytes *int64
	inflight   *int
	hotBytes   *int64
	maxBatch   *int64
	storeWait  *time.Duration
	compress   *string
	maxParts   *int64
	createBkt  *bool
}

// tuning lists the node flags other than --store, for the check that a
// client command uses them only with --store.
var tuning = []string{"hot-dir", "roll-bytes", "roll-age", "cache-bytes", "max-inflight-rolls", "hot-bytes", "max-batch-bytes", "store-timeout", "compression", "max-partitions", "create-bucket"}

// addNodeFlags adds the node flags in the Node section of f's help.
// storeDef is the default of --store and hotDirDef the words for the
// default of --hot-dir.
func addNodeFlags(f *flags, storeDef, storeDefText, hotDirDef string) nodeFlags {
	d := shale.DefaultOptions()
	old := f.section
	f.section = sectionNode
	defer func() { f.section = old }()
	return nodeFlags{
		f:          f,
		store:      f.StringDef("store", storeDef, storeDefText, storeHelp),
		hotDir:     f.StringDef("hot-dir", "", hotDirDef, "directory for hot segments; the node owns it, one per process"),
		rollBytes:  f.Size("roll-bytes", d.RollBytes, 1, "roll a hot segment into an object at this size"),
		rollAge:    f.Duration("roll-age", d.RollAge, "roll a hot segment this long after its first append"),
		cacheBytes: f.Size("cache-bytes", d.CacheBytes, 1, "bytes of decoded object batches cached for reads"),
		inflight:   f.Int("max-inflight-rolls", d.MaxInflightRolls, "rolled segments uploading or committing at once; more producers wait (back-pressure)"),
		hotBytes:   f.Size("hot-bytes", d.HotBytes, 1, "bytes of committed hot segments kept locally for reads"),
		maxBatch:   f.Size("max-batch-bytes", int64(d.MaxBatchBytes), 1, "largest accepted produce batch of one partition, encoded"),
		compress:   f.String("compression", d.Compression.String(), "Arrow buffer compression of new objects: lz4, zstd or none (none is readable by every Arrow reader, including those without codecs)"),
		storeWait:  f.Duration("store-timeout", d.StoreTimeout, "how long a roll's upload and commit retry a failing store before its producers get an error; every store call of a request is bounded by it"),
		maxParts:   f.Count("max-partitions", d.MaxPartitions, 1, math.MaxInt64, "most partitions of all topics in the bucket together; creating a topic past it fails"),
		createBkt:  f.Bool("create-bucket", false, "create the bucket of an s3:// or minio:// store if it does not exist (without it, a missing bucket is an error)"),
	}
}

// options are the node options the flags give, validated; HotDir is left
// to the caller.
func (nf nodeFlags) options() (shale.Options, error) {
	c, err := object.ParseCompression(*nf.compress)
	if err != nil {
		return shale.Options{}, usagef("--compression: %w", err)
	}
	if *nf.maxBatch > 1<<31-1 {
		return shale.Options{}, usagef("--max-batch-bytes %d is above 2GiB", *nf.maxBatch)
	}
	opts := shale.DefaultOptions()
	opts.HotDir = *nf.hotDir
	opts.RollBytes = *nf.rollBytes
	opts.RollAge = *nf.rollAge
	opts.MaxInflightRolls = *nf.inflight
	opts.HotBytes = *nf.hotBytes
	opts.MaxBatchBytes = int(*nf.maxBatch)
	opts.StoreTimeout = *nf.storeWait
	opts.CacheBytes = *nf.cacheBytes
	opts.Compression = c
	opts.MaxPartitions = *nf.maxParts
	opts.Hook = crashHook()
	check := opts
	if check.HotDir == "" {
		check.HotDir = "set later"
	}
	if err := check.Validate(); err != nil {
		return shale.Options{}, usageError{err}
	}
	return opts, nil
}

// defaultHotDir is serve's hot directory for a store: for file://DIR a
// directory beside DIR named for DIR's absolute path, so two buckets in one
// folder never share one (and the node, which owns its hot directory,
// never touches another bucket's files); "" (a new temporary directory)
// for other stores.
func defaultHotDir(store string) (string, error) {
	dir, ok := strings.CutPrefix(store, "file://")
	if !ok {
		return "", nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", dir, err)
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(filepath.Dir(abs), ".shale-hot-"+filepath.Base(abs)+"-"+hex.EncodeToString(sum[:4])), nil
}

// start opens the store and starts a node. The returned cleanup closes the
// node and the store and removes a temporary hot directory.
func (nf nodeFlags) start(ctx context.Context, logger *slog.Logger) (*shale.Node, func() error, error) {
	opts, err := nf.options()
	if err != nil {
		return nil, nil, err
	}
	opts.Logger = logger
	store, err := tier.OpenWith(ctx, *nf.store, tier.OpenOptions{CreateBucket: *nf.createBkt})
	if err != nil {
		return nil, nil, err
	}
	tmp := ""
	if opts.HotDir == "" {
		if tmp, err = os.MkdirTemp("", "shale-hot-"); err != nil {
			store.Close()
			return nil, nil, err
		}
		opts.HotDir = tmp
	}
	n, err := shale.Start(ctx, store, opts)
	if err != nil {
		store.Close()
		if tmp != "" {
			os.RemoveAll(tmp)
		}
		return nil, nil, err
	}
	return n, func() error {
		err := n.Close()
		store.Close()
		if tmp != "" {
			os.RemoveAll(tmp)
		}
		return err
	}, nil
}

// crashHook reads SHALE_CRASH_AT=STAGE[:N], a testing aid: the process
// kills itself with SIGKILL the Nth time (default first) a roll reaches
// STAGE (before-put, after-put, after-commit).
func crashHook() func(string) {
	spec := os.Getenv("SHALE_CRASH_AT")
	if spec == "" {
		return nil
	}
	stage, nth, _ := strings.Cut(spec, ":")
	want, _ := strconv.Atoi(nth)
	want = max(want, 1)
	var seen int
	return func(s string) {
		if s == stage {
			seen++
			if seen == want {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	}
}
