package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/shalelog/shale/cache"
	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/reader"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/manifest"
)

// Config is what a node needs beyond its store.
type Config struct {
	Ingest     ingest.Options
	CacheBytes int64
	Logger     *slog.Logger
}

// Node is a whole shale node: commit log, ingest, reader, cache and the
// HTTP API, over one store.
type Node struct {
	Store  tier.Store
	Log    *manifest.Log
	Ingest *ingest.Node
	Reader *reader.Merge
	Cache  *cache.Cache
	Server *Server

	http *http.Server
	ln   net.Listener
}

// StartNode opens the commit log and starts ingest over store. It does not
// listen; call Serve.
func StartNode(ctx context.Context, store tier.Store, cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Ingest.Node == "" {
		h, _ := os.Hostname()
		cfg.Ingest.Node = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	cfg.Ingest.Logger = cfg.Logger
	log, err := manifest.Open(ctx, store, manifest.Options{Node: cfg.Ingest.Node, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("open commit log in %s: %w", store, err)
	}
	in, err := ingest.New(store, log, cfg.Ingest)
	if err != nil {
		log.Close()
		return nil, err
	}
	c := cache.New(cfg.CacheBytes)
	n := &Node{Store: store, Log: log, Ingest: in, Cache: c, Reader: reader.New(log, store, in, c)}
	n.Server = &Server{Log: log, Ingest: in, Reader: n.Reader, Cache: c, Logger: cfg.Logger}
	return n, nil
}

// Listen binds addr (":0" picks a free port) and serves the API in the
// background. It returns the bound address.
func (n *Node) Listen(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen on %s: %w", addr, err)
	}
	n.ln = ln
	n.http = &http.Server{Handler: n.Server.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go n.http.Serve(ln)
	return ln.Addr().String(), nil
}

// Close stops the API, commits what ingest accepted, and closes the log.
func (n *Node) Close() error {
	var errs []error
	if n.http != nil {
		// Produces in flight finish (their commits take at most the store
		// timeout); long-polls still waiting after the grace period are cut.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := n.http.Shutdown(ctx); err != nil {
			n.http.Close()
		}
		cancel()
	}
	errs = append(errs, n.Ingest.Close(), n.Log.Close())
	return errors.Join(errs...)
}
