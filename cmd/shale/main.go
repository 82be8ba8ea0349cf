// Command shale runs a shale node and talks to one.
//
// Exit status: 0 success, 1 a failure at run time, 2 a usage mistake.
// Each flag can also be set by an environment variable of its own command
// (SHALE_SERVE_STORE, SHALE_PRODUCE_PARTITION, ...); the connection flags
// of every client command are SHALE_SERVER and SHALE_TIMEOUT. A flag on the
// command line wins.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

const usage = `shale: a Kafka-style log whose only durable state is an object-store bucket.

Usage:
  shale serve   [flags]                 run a node (HTTP API)
  shale topic   create|list|describe|delete ...
  shale produce TOPIC [flags] < input   append records read from stdin
  shale consume TOPIC [flags]           print records (--group G: resume and commit)
  shale group   list|describe|reset|delete ...   consumer groups
  shale bench   [flags]                 measure produce, replay and the store's raw speed
  shale log     verify --store URL      check a bucket's commit log, checkpoints and objects
  shale version                         print the version

Client commands (topic, produce, consume) talk to a server (--server,
default http://127.0.0.1:8092) or, with --store URL, run a short-lived
node on the bucket. Exit status: 0 ok, 1 failure, 2 usage mistake.

Run 'shale COMMAND --help' for a command's flags and an example.
`

type command func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error

func main() {
	os.Exit(run(signalContext(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// signalContext is cancelled by the first SIGINT or SIGTERM, which starts
// a graceful shutdown (a server commits what it accepted, which may take up
// to --store-timeout if the store is failing). A second signal ends the
// process at once: a person pressing Ctrl-C again, or a supervisor, must
// never be ignored.
func signalContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		s := <-sigs
		fmt.Fprintf(os.Stderr, "shale: second %v: exiting now without finishing shutdown\n", s)
		os.Exit(130)
	}()
	return ctx
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	commands := map[string]command{
		"serve":   runServe,
		"topic":   runTopic,
		"produce": runProduce,
		"consume": runConsume,
		"group":   runGroup,
		"bench":   runBench,
		"log":     runLog,
		"version": runVersion,
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "--version", "-version":
		args[0] = "version"
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "shale: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return exitCode(c(ctx, args[1:], stdin, stdout, stderr), "shale "+args[0], stderr)
}

// subcommandError names the subcommand (topic create) an error came from.
type subcommandError struct {
	name string
	err  error
}

func (e subcommandError) Error() string { return e.err.Error() }
func (e subcommandError) Unwrap() error { return e.err }

// exitCode reports err and returns the exit status for it.
func exitCode(err error, what string, stderr io.Writer) int {
	var ue usageError
	var sub subcommandError
	if errors.As(err, &sub) {
		what = "shale " + sub.name
	}
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", what, err, what)
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", what, err)
	return 1
}

func runVersion(_ context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
	f := newFlags("version", "version", stdout)
	f.about = "Prints the module version, the VCS revision it was built from, and the Go version."
	f.example = "shale version"
	if pos, err := f.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("version takes no arguments")
	}
	fmt.Fprintln(stdout, version())
	return nil
}

// version describes this build from its embedded build information.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "shale (no build information)"
	}
	v := "shale " + bi.Main.Version
	var rev, when, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = " (modified)"
			}
		}
	}
	if rev != "" {
		v += fmt.Sprintf(" revision %s%s %s", rev, dirty, when)
	}
	return v + " " + bi.GoVersion
}
