package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/group"
	"github.com/shalelog/shale/httpapi"
	"github.com/shalelog/shale/kafka"
)

const (
	defaultStore  = "file://shale-data/bucket"
	defaultListen = "127.0.0.1:8092"
	defaultKafka  = "127.0.0.1:9092"
)

func runServe(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("serve", "serve [flags]", stdout)
	f.about = `Runs a node: the HTTP API (docs/http.md) and the Kafka protocol
(docs/kafka.md) over a bucket. Any number of nodes may serve one bucket. The first SIGINT or SIGTERM commits what was
accepted and exits; a second exits at once.`
	f.example = "shale serve --store minio://127.0.0.1:9000/shale --listen :8092"
	listen := f.String("listen", defaultListen, "HTTP API address (host:port; port 0 picks a free one)")
	kafkaListen := f.String("kafka-listen", defaultKafka, "Kafka protocol address (host:port; port 0 picks a free one; empty disables)")
	kafkaAdvertise := f.String("kafka-advertise", "", "host:port Kafka clients are told to reach this node at (behind a load balancer or in Kubernetes); default the --kafka-listen address")
	nf := addNodeFlags(f, defaultStore, "file://shale-data/bucket",
		"for file://DIR, DIR/../.shale-hot-NAME-HASH (of DIR's absolute path; a second node on the same DIR needs its own --hot-dir); else a new temporary directory, removed at exit")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("serve takes no arguments, got %q", pos)
	}
	if *nf.hotDir == "" {
		if *nf.hotDir, err = defaultHotDir(*nf.store); err != nil {
			return err
		}
	}
	if _, err := nf.options(); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	n, cleanup, err := nf.start(ctx, logger)
	if err != nil {
		return err
	}
	// The Kafka listener is bound first: the membership advertises its
	// address. The membership and the group manager are the node's, shared
	// by both front ends (HTTP reads and sets the groups Kafka clients use).
	var (
		ks      *kafka.Server
		members *shale.Members
		groups  *group.Manager
		kaddr   string
	)
	closeGroups := func() error {
		var err error
		if groups != nil {
			err = groups.Close()
		}
		if members != nil {
			err = errors.Join(err, members.Close())
		}
		return err
	}
	if *kafkaListen != "" {
		ln, err := net.Listen("tcp", *kafkaListen)
		if err != nil {
			cleanup()
			return fmt.Errorf("listen on %s: %w", *kafkaListen, err)
		}
		adv := *kafkaAdvertise
		if adv == "" {
			adv = ln.Addr().String()
		}
		self := shale.Member{Name: n.Opts.Name, ID: shale.MemberID(n.Opts.Name), Addr: adv}
		if members, err = shale.StartMembers(ctx, n.Store, self, 0, logger); err != nil {
			ln.Close()
			cleanup()
			return err
		}
		groups = kafka.NewGroups(n, members)
		ks = kafka.New(n, kafka.Options{Advertise: *kafkaAdvertise, Members: members, Groups: groups})
		if kaddr, err = ks.Serve(ctx, ln); err != nil {
			closeGroups()
			cleanup()
			return err
		}
	}
	srv := httpapi.New(n, httpapi.DefaultLimits())
	if groups != nil {
		srv.SetGroups(groups, members)
	}
	addr, err := srv.Listen(*listen)
	if err != nil {
		if ks != nil {
			ks.Close()
		}
		closeGroups()
		cleanup()
		return err
	}
	o := n.Opts
	logger.Info("shale serving", "http", "http://"+addr, "kafka", kaddr, "store", n.Store.String(), "node", o.Name,
		"hot_dir", o.HotDir, "roll_bytes", o.RollBytes, "roll_age", o.RollAge, "max_inflight_rolls", o.MaxInflightRolls,
		"hot_bytes", o.HotBytes, "max_batch_bytes", o.MaxBatchBytes, "compression", o.Compression.String(),
		"store_timeout", o.StoreTimeout, "cache_bytes", o.CacheBytes, "max_partitions", o.MaxPartitions, "version", version())
	if ks != nil {
		// Before the HTTP line, which scripts wait for: once it is out,
		// both listeners are up.
		fmt.Fprintf(stdout, "shale kafka protocol on %s\n", kaddr)
	}
	fmt.Fprintf(stdout, "shale listening on http://%s (store %s)\n", addr, n.Store)
	<-ctx.Done()
	logger.Info("shutting down: committing accepted records (a second signal exits at once)")
	var kerr error
	if ks != nil {
		kerr = ks.Close()
	}
	return errors.Join(kerr, srv.Close(), closeGroups(), cleanup())
}
