// Package shale assembles a node: the commit log, ingest, the merged
// reader and the object cache over one store, with one set of defaults.
// The network front ends (httpapi, and the Kafka protocol) are clients of
// a Node; none of them builds one.
package shale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/shalelog/shale/cache"
	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/reader"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/manifest"
	"github.com/shalelog/shale/tier/object"
)

// Options configure a node. DefaultOptions is the one place defaults are
// written; flags and tests start from it.
type Options struct {
	// Name identifies the node in object keys and commit records; default
	// HOSTNAME-PID.
	Name string
	// HotDir holds the node's hot segments; required. The node owns it:
	// it must be new, empty or one a shale node marked before (a
	// SHALE-HOT-DIR file), and only shale's own segment files there are
	// removed at start (ingest.Options.Dir).
	HotDir           string
	RollBytes        int64         // roll a hot segment at this size
	RollAge          time.Duration // roll a hot segment this long after its first append
	MaxInflightRolls int           // rolled segments uploading or committing at once
	HotBytes         int64         // committed hot segments kept locally for reads
	MaxBatchBytes    int           // largest accepted append, encoded
	Compression      object.Compression
	// StoreTimeout bounds every store call's retries: an upload or commit
	// retries this long before its producers get an error, and front ends
	// bound a request's store work by it.
	StoreTimeout time.Duration
	CacheBytes   int64 // bytes of object data cached for reads
	// MaxPartitions bounds the partitions of all topics in the cluster
	// together; creating a topic past it fails with
	// manifest.ErrPartitionLimit.
	MaxPartitions int64
	Logger        *slog.Logger
	// Hook, if set, is called at each step of a roll (ingest.Options.Hook).
	Hook func(stage string)
}

// DefaultOptions returns the defaults of every setting but HotDir.
func DefaultOptions() Options {
	in := ingest.DefaultOptions()
	return Options{
		RollBytes:        in.RollBytes,
		RollAge:          in.RollAge,
		MaxInflightRolls: in.MaxInflight,
		HotBytes:         in.HotBytes,
		MaxBatchBytes:    in.MaxBatchBytes,
		Compression:      in.Compression,
		StoreTimeout:     in.StoreTimeout,
		CacheBytes:       256 << 20,
		MaxPartitions:    manifest.DefaultMaxPartitions,
	}
}

// Validate reports settings that cannot work. Zero is not a default here:
// a caller that wants defaults starts from DefaultOptions.
func (o *Options) Validate() error {
	var errs []error
	positive := func(name string, v int64) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %d", name, v))
		}
	}
	positive("roll bytes", o.RollBytes)
	positive("roll age", int64(o.RollAge))
	positive("max inflight rolls", int64(o.MaxInflightRolls))
	positive("hot bytes", o.HotBytes)
	positive("max batch bytes", int64(o.MaxBatchBytes))
	positive("store timeout", int64(o.StoreTimeout))
	positive("cache bytes", o.CacheBytes)
	positive("max partitions", o.MaxPartitions)
	if o.HotDir == "" {
		errs = append(errs, errors.New("hot directory not set"))
	}
	return errors.Join(errs...)
}

// Node is one running shale node over a store. Any number of nodes may
// share a store; none needs to know of the others.
type Node struct {
	Store  tier.Store
	Log    *manifest.Log
	Ingest *ingest.Writer
	Reader *reader.Merge
	Cache  *cache.Cache
	Opts   Options
}

// Start opens the commit log and starts ingest over store. The caller
// keeps ownership of store.
func Start(ctx context.Context, store tier.Store, opts Options) (*Node, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Name == "" {
		h, _ := os.Hostname()
		opts.Name = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	log, err := manifest.Open(ctx, store, manifest.Options{
		Node: opts.Name, Logger: opts.Logger, StoreTimeout: opts.StoreTimeout, MaxPartitions: opts.MaxPartitions,
	})
	if err != nil {
		return nil, fmt.Errorf("open commit log in %s: %w", store, err)
	}
	in, err := ingest.New(store, log, ingest.Options{
		Dir:           opts.HotDir,
		RollBytes:     opts.RollBytes,
		RollAge:       opts.RollAge,
		MaxInflight:   opts.MaxInflightRolls,
		HotBytes:      opts.HotBytes,
		MaxBatchBytes: opts.MaxBatchBytes,
		Compression:   opts.Compression,
		Node:          opts.Name,
		StoreTimeout:  opts.StoreTimeout,
		Logger:        opts.Logger,
		Hook:          opts.Hook,
	})
	if err != nil {
		log.Close()
		return nil, err
	}
	c := cache.New(opts.CacheBytes)
	return &Node{Store: store, Log: log, Ingest: in, Cache: c, Reader: reader.New(log, store, in, c, reader.Options{StoreTimeout: opts.StoreTimeout}), Opts: opts}, nil
}

// Close commits what ingest accepted and closes the log. Front ends stop
// taking requests first.
func (n *Node) Close() error {
	return errors.Join(n.Ingest.Close(), n.Log.Close())
}
