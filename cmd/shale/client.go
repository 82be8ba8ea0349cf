package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"text/tabwriter"
	"time"

	"github.com/shalelog/shale/httpapi"
)

// clientFlags select the server a client command talks to: a running one
// (--server) or a short-lived node on a bucket (--store).
type clientFlags struct {
	f       *flags
	server  *string
	timeout *time.Duration
	node    nodeFlags
}

const defaultTimeout = time.Minute

func addClientFlags(f *flags) clientFlags {
	old := f.section
	f.section = sectionConn
	cf := clientFlags{
		f:      f,
		server: f.String("server", "http://"+defaultListen, "URL of a shale server"),
		timeout: f.Duration("timeout", defaultTimeout,
			"how long one request may take (a produce waits for its commit; keep this above the server's --store-timeout, default 30s)"),
	}
	f.section = old
	cf.node = addNodeFlags(f, "", "", "a new temporary directory, removed at exit")
	return cf
}

// check reports conflicting connection flags. A flag on the command line
// beats a variable, so an exported SHALE_SERVER does not stop a one-off
// --store.
func (cf clientFlags) check() error {
	srvCmd, srvEnv := cf.f.set("server")
	stCmd, stEnv := cf.f.set("store")
	switch {
	case srvCmd && stCmd:
		return usagef("give --server or --store, not both")
	case srvEnv && stEnv && !srvCmd && !stCmd:
		return usagef("SHALE_SERVER and %s are both set: unset one", cf.f.envPrefix+"STORE")
	case srvCmd:
		*cf.node.store = ""
	}
	if *cf.node.store == "" {
		for _, name := range tuning {
			if cf.f.given(name) {
				return usagef("--%s applies only with --store (a node in this process); a server has its own settings", name)
			}
		}
		return nil
	}
	_, err := cf.node.options()
	return err
}

// connect returns the API and a function to release it. With --store it
// runs a node in this process for the duration of the command.
// connectTopic connects and describes topic, and checks a --partition
// given on f against the topic's partitions (a usage error).
func (cf clientFlags) connectTopic(ctx context.Context, f *flags, topic string, partition int64, stderr io.Writer) (*api, httpapi.TopicDescription, func(), error) {
	a, done, err := cf.connect(ctx, stderr)
	if err != nil {
		return nil, httpapi.TopicDescription{}, nil, err
	}
	d, err := a.describe(ctx, topic)
	if err == nil && f.given("partition") && (partition < 0 || partition >= int64(d.Partitions)) {
		err = usagef("--partition %d: topic %s has partitions 0 to %d", partition, topic, d.Partitions-1)
	}
	if err != nil {
		done()
		return nil, d, nil, err
	}
	return a, d, done, nil
}

func (cf clientFlags) connect(ctx context.Context, stderr io.Writer) (*api, func(), error) {
	if err := cf.check(); err != nil {
		return nil, nil, err
	}
	if *cf.node.store == "" {
		return newAPI(*cf.server, *cf.timeout), func() {}, nil
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, cleanup, err := cf.node.start(ctx, logger)
	if err != nil {
		return nil, nil, err
	}
	srv := httpapi.New(n, httpapi.DefaultLimits())
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return newAPI(addr, *cf.timeout), func() {
		if err := errors.Join(srv.Close(), cleanup()); err != nil {
			fmt.Fprintf(stderr, "close node: %v\n", err)
		}
	}, nil
}

const topicUsage = `Usage: shale topic COMMAND [flags]

Commands:
  create NAME [--partitions N] [--retention-ms MS] [--retention-bytes SIZE]
  list
  describe NAME
  delete NAME

Run 'shale topic COMMAND --help' for a command's flags and an example.
`

func runTopic(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, topicUsage)
		return usagef("missing command: create, list, describe or delete")
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdout, topicUsage)
		return nil
	}
	sub := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"create": runTopicCreate, "list": runTopicList, "describe": runTopicDescribe, "delete": runTopicDelete,
	}[args[0]]
	if sub == nil {
		return usagef("unknown command topic %q: want create, list, describe or delete", args[0])
	}
	if err := sub(ctx, args[1:], stdout, stderr); err != nil {
		return subcommandError{name: "topic " + args[0], err: err}
	}
	return nil
}

// oneName parses args of a command that takes one topic name.
func oneName(f *flags, args []string) (string, error) {
	pos, err := f.parse(args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usagef("%s takes one topic name", f.cmd)
	}
	return pos[0], nil
}

func runTopicCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("topic create", "topic create NAME [flags]", stdout)
	f.about = "Creates a topic. Names are 1 to 249 of [a-zA-Z0-9._-]."
	f.example = "shale topic create orders --partitions 4 --retention-ms 604800000"
	partitions := f.Count("partitions", 1, 1, math.MaxInt32, "partition count")
	retMs := f.Count("retention-ms", -1, -1, math.MaxInt64, "retention time in ms; -1 for unlimited")
	retBytes := f.Size("retention-bytes", -1, -1, "retention size per partition; -1 for unlimited")
	cf := addClientFlags(f)
	name, err := oneName(f, args)
	if err != nil {
		return err
	}
	if *retMs == 0 || *retBytes == 0 {
		return usagef("a retention of 0 would keep nothing: give a positive value, or -1 for unlimited")
	}
	a, done, err := cf.connect(ctx, stderr)
	if err != nil {
		return err
	}
	defer done()
	t, err := a.createTopic(ctx, httpapi.TopicRequest{Name: name, Partitions: int32(*partitions), RetentionMs: *retMs, RetentionBytes: *retBytes})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created topic %s with %d partitions\n", t.Name, t.Partitions)
	return nil
}

func runTopicList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("topic list", "topic list [flags]", stdout)
	f.about = "Lists topics and their partition counts, one per line: NAME<TAB>PARTITIONS."
	f.example = "shale topic list --server http://10.0.0.7:8092"
	cf := addClientFlags(f)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("topic list takes no arguments")
	}
	a, done, err := cf.connect(ctx, stderr)
	if err != nil {
		return err
	}
	defer done()
	ts, err := a.topics(ctx)
	if err != nil {
		return err
	}
	for _, t := range ts {
		fmt.Fprintf(stdout, "%s\t%d\n", t.Name, t.Partitions)
	}
	return nil
}

func runTopicDescribe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("topic describe", "topic describe NAME [flags]", stdout)
	f.about = "Prints a topic's settings and each partition's offsets, bytes and objects."
	f.example = "shale topic describe orders"
	cf := addClientFlags(f)
	name, err := oneName(f, args)
	if err != nil {
		return err
	}
	a, done, err := cf.connect(ctx, stderr)
	if err != nil {
		return err
	}
	defer done()
	d, err := a.describe(ctx, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "topic %s  id %s  partitions %d  retention_ms %d  retention_bytes %d\n", d.Name, d.ID, d.Partitions, d.Retention.Ms, d.Retention.Bytes)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tSTART\tEND\tBYTES\tOBJECTS")
	for _, p := range d.Parts {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\n", p.Partition, p.Start, p.End, p.Bytes, p.Objects)
	}
	return tw.Flush()
}

func runTopicDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("topic delete", "topic delete NAME [flags]", stdout)
	f.about = "Deletes a topic and its records."
	f.example = "shale topic delete orders"
	cf := addClientFlags(f)
	name, err := oneName(f, args)
	if err != nil {
		return err
	}
	a, done, err := cf.connect(ctx, stderr)
	if err != nil {
		return err
	}
	defer done()
	if err := a.deleteTopic(ctx, name); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted topic %s\n", name)
	return nil
}
