package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/httpapi"
	"github.com/shalelog/shale/tier"
	_ "github.com/shalelog/shale/tier/fs"
	_ "github.com/shalelog/shale/tier/minio"
	"github.com/shalelog/shale/tier/object"
	_ "github.com/shalelog/shale/tier/s3"
)

const (
	defaultStore  = "file://shale-data/bucket"
	defaultListen = "127.0.0.1:8092"
)

// nodeFlags are the flags of anything that runs a node: serve, bench, and
// client commands given --store.
type nodeFlags struct {
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
}

func addNodeFlags(f flags, store string) nodeFlags {
	d := shale.DefaultOptions()
	return nodeFlags{
		store:      f.String("store", store, "object store URL: file://DIR, s3://BUCKET/PREFIX (AWS chain: AWS_ENDPOINT_URL_S3, AWS_REGION, ...) or minio://HOST:PORT/BUCKET/PREFIX"),
		hotDir:     f.String("hot-dir", "", "directory for hot segments, one per process (default: a new temporary directory)"),
		rollBytes:  f.Int64("roll-bytes", d.RollBytes, "roll a hot segment into an object at this size"),
		rollAge:    f.Duration("roll-age", d.RollAge, "roll a hot segment this long after its first append"),
		cacheBytes: f.Int64("cache-bytes", d.CacheBytes, "bytes of decoded object batches cached for reads"),
		inflight:   f.Int("max-inflight-rolls", d.MaxInflightRolls, "rolled segments uploading or committing at once; more producers wait (back-pressure)"),
		hotBytes:   f.Int64("hot-bytes", d.HotBytes, "bytes of committed hot segments kept locally for reads"),
		maxBatch:   f.Int64("max-batch-bytes", int64(d.MaxBatchBytes), "largest accepted produce batch, encoded"),
		compress:   f.String("compression", d.Compression.String(), "Arrow buffer compression of new objects: lz4, zstd or none (none is readable by every Arrow reader, including those without codecs)"),
		storeWait:  f.Duration("store-timeout", d.StoreTimeout, "how long a roll's upload and commit retry a failing store before its producers get an error"),
	}
}

// start opens the store and starts a node. The returned cleanup closes the
// node and the store and removes a temporary hot directory.
func (nf nodeFlags) start(ctx context.Context, logger *slog.Logger) (*shale.Node, func() error, error) {
	opts, err := nf.options()
	if err != nil {
		return nil, nil, err
	}
	opts.Logger = logger
	store, err := tier.Open(ctx, *nf.store)
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

// options are the node options the flags give.
func (nf nodeFlags) options() (shale.Options, error) {
	c, err := object.ParseCompression(*nf.compress)
	if err != nil {
		return shale.Options{}, fmt.Errorf("--compression: %w", err)
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
	opts.Hook = crashHook()
	return opts, nil
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

func runServe(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("serve", "serve [flags]", stderr)
	nf := addNodeFlags(f, defaultStore)
	listen := f.String("listen", defaultListen, "HTTP API address")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if *nf.hotDir == "" && strings.HasPrefix(*nf.store, "file://") {
		// Keep the hot directory beside a local bucket, where a person
		// expects the node's files.
		dir := strings.TrimPrefix(*nf.store, "file://")
		*nf.hotDir = filepath.Join(filepath.Dir(filepath.Clean(dir)), "hot")
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	n, cleanup, err := nf.start(ctx, logger)
	if err != nil {
		return err
	}
	srv := httpapi.New(n, httpapi.DefaultLimits())
	addr, err := srv.Listen(*listen)
	if err != nil {
		cleanup()
		return err
	}
	logger.Info("shale serving", "http", "http://"+addr, "store", n.Store.String(), "roll_bytes", *nf.rollBytes, "roll_age", *nf.rollAge)
	fmt.Fprintf(stdout, "shale listening on http://%s (store %s)\n", addr, n.Store)
	<-ctx.Done()
	logger.Info("shutting down: committing accepted records")
	return errors.Join(srv.Close(), cleanup())
}
