package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/manifest"
)

const logUsage = `Usage: shale log COMMAND [flags]

Commands:
  verify --store URL   check the commit log, checkpoints, index pages and objects against each other

Run 'shale log COMMAND --help' for a command's flags and an example.
`

func runLog(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, logUsage)
		return usagef("missing command: verify")
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdout, logUsage)
		return nil
	case "verify":
		if err := runLogVerify(ctx, args[1:], stdout); err != nil {
			return subcommandError{name: "log verify", err: err}
		}
		return nil
	}
	return usagef("unknown command log %q: want verify", args[0])
}

func runLogVerify(ctx context.Context, args []string, stdout io.Writer) error {
	f := newFlags("log verify", "log verify --store URL [flags]", stdout)
	f.about = `Reads a bucket (it writes nothing) and checks its commit log, checkpoints and
index pages against each other and the data objects they reference, as
manifest.Verify does. It prints each problem as KEY: WHAT and exits 1 if
there is any, 0 if there is none.`
	f.example = "shale log verify --store minio://127.0.0.1:9000/shale"
	store := f.String("store", "", storeHelp)
	skip := f.Bool("skip-objects", false, "do not HEAD every data object the index references (one request per object)")
	timeout := f.Duration("store-timeout", 30*time.Second, "bound of each store call")
	parallel := f.Count("parallel", 16, 1, 1024, "store calls at once")
	format := f.String("format", "text", "output: text (KEY: WHAT per line) or json (one object per problem)")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("log verify takes no arguments")
	}
	if *store == "" {
		return usagef("--store is required: the bucket to verify")
	}
	if *format != "text" && *format != "json" {
		return usagef("--format %q: want text or json", *format)
	}
	s, err := tier.Open(ctx, *store)
	if err != nil {
		return err
	}
	defer s.Close()
	problems, err := manifest.Verify(ctx, s, manifest.VerifyOptions{SkipObjects: *skip, StoreTimeout: *timeout, Parallel: int(*parallel)})
	if err != nil {
		return fmt.Errorf("verify %s: %w", s, err)
	}
	enc := json.NewEncoder(stdout)
	for _, p := range problems {
		if *format == "json" {
			enc.Encode(p)
		} else {
			fmt.Fprintln(stdout, p)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problem%s in %s", len(problems), plural(len(problems)), s)
	}
	if *format == "text" {
		fmt.Fprintf(stdout, "no problems in %s\n", s)
	}
	return nil
}
