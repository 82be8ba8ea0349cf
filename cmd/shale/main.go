// Command shale runs a shale node and talks to one.
//
// Every flag can also be set by an environment variable SHALE_<FLAG>, with
// dashes as underscores (SHALE_STORE, SHALE_ROLL_BYTES, ...); a flag on the
// command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usage = `shale: a Kafka-style log whose only durable state is an object-store bucket.

Usage:
  shale serve   [flags]            run a node (HTTP API)
  shale topic   create|list|describe|delete ...
  shale produce TOPIC [flags]      append newline-delimited values from stdin
  shale consume TOPIC [flags]      print records
  shale bench   [flags]            measure produce, replay and the store's raw speed

Run 'shale COMMAND --help' for a command's flags.
`

type command struct {
	run func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	commands := map[string]command{
		"serve":   {runServe},
		"topic":   {runTopic},
		"produce": {runProduce},
		"consume": {runConsume},
		"bench":   {runBench},
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "shale: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err := c.run(ctx, args[1:], stdin, stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "shale %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// flags is a FlagSet whose defaults come from SHALE_* environment
// variables. A variable that does not parse is an error, reported by parse.
type flags struct {
	*flag.FlagSet
	envErrs *[]error
}

func (f flags) envErr(name, v string, err error) {
	*f.envErrs = append(*f.envErrs, fmt.Errorf("%s=%q: %w", envName(name), v, err))
}

func newFlags(name, synopsis string, stderr io.Writer) flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: shale %s\n\nFlags (each also settable as SHALE_<FLAG>):\n", synopsis)
		fs.PrintDefaults()
	}
	return flags{FlagSet: fs, envErrs: new([]error)}
}

func envName(flagName string) string {
	return "SHALE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (f flags) String(name, def, help string) *string {
	if v, ok := os.LookupEnv(envName(name)); ok {
		def = v
	}
	return f.FlagSet.String(name, def, help)
}

func (f flags) Int64(name string, def int64, help string) *int64 {
	if v, ok := os.LookupEnv(envName(name)); ok {
		n, err := parseSize(v)
		if err != nil {
			f.envErr(name, v, err)
		}
		def = n
	}
	p := new(int64)
	*p = def
	f.FlagSet.Func(name, fmt.Sprintf("%s (default %d; accepts KiB, MiB, GiB suffixes)", help, def), func(s string) error {
		n, err := parseSize(s)
		*p = n
		return err
	})
	return p
}

func (f flags) Int(name string, def int, help string) *int {
	if v, ok := os.LookupEnv(envName(name)); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.envErr(name, v, err)
		}
		def = n
	}
	return f.FlagSet.Int(name, def, help)
}

func (f flags) Duration(name string, def time.Duration, help string) *time.Duration {
	if v, ok := os.LookupEnv(envName(name)); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.envErr(name, v, err)
		}
		def = d
	}
	return f.FlagSet.Duration(name, def, help)
}

func (f flags) Bool(name string, def bool, help string) *bool {
	if v, ok := os.LookupEnv(envName(name)); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.envErr(name, v, err)
		}
		def = b
	}
	return f.FlagSet.Bool(name, def, help)
}

// parse parses args, allowing flags after positional arguments
// ("produce TOPIC --key k" as well as "produce --key k TOPIC").
func (f flags) parse(args []string) ([]string, error) {
	if err := errors.Join(*f.envErrs...); err != nil {
		return nil, err
	}
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			return nil, err
		}
		args = f.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// parseSize parses a byte count with an optional KiB/MiB/GiB (or K/M/G)
// suffix.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a byte count such as 1048576 or 16MiB", s)
	}
	return n * mult, nil
}
