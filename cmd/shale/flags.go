package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// usageError is a mistake in how a command was called: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// section groups flags in a command's help.
type section int

const (
	sectionCommand section = iota // the command's own flags
	sectionConn                   // which server and how long to wait: every client command
	sectionNode                   // node tuning: serve, bench, and client commands with --store
)

var sectionTitles = map[section]string{
	sectionCommand: "Flags",
	sectionConn:    "Connection",
	sectionNode:    "Node",
}

// flagInfo is what help prints about a flag, and where its value came from.
type flagInfo struct {
	name, kind, help, def, env string
	section                    section
	fromEnv, hidden            bool
}

// flags is one command's flag set. Each flag may also be set by one
// environment variable of this command only: SHALE_<COMMAND>_<FLAG> (such as
// SHALE_SERVE_STORE or SHALE_PRODUCE_PARTITION), except the connection
// flags every client command shares (SHALE_SERVER, SHALE_TIMEOUT). So a
// variable set for one command never changes what another does. A flag on
// the command line wins over its variable.
type flags struct {
	fs        *flag.FlagSet
	cmd       string // "produce", "topic create"
	synopsis  string
	about     string // a paragraph after the synopsis
	example   string
	section   section // of the flags being added
	envPrefix string
	infos     []*flagInfo
	envErrs   []error
	stdout    io.Writer
}

// newFlags returns the flag set of command cmd ("serve", "topic create").
func newFlags(cmd, synopsis string, stdout io.Writer) *flags {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := &flags{fs: fs, cmd: cmd, synopsis: synopsis, stdout: stdout,
		envPrefix: "SHALE_" + envWord(cmd) + "_"}
	fs.Usage = func() {}
	return f
}

func envWord(s string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_", " ", "_").Replace(s))
}

// stringKinds name what a string flag takes, for help.
var stringKinds = map[string]string{
	"store": "URL", "server": "URL", "hot-dir": "DIR", "listen": "ADDR", "kafka-listen": "ADDR", "kafka-advertise": "HOST:PORT", "compression": "CODEC",
	"offset": "OFFSET", "time": "TIME", "timestamp": "TIME", "until": "OFFSET|TIME", "template": "TEMPLATE",
	"format": "FORMAT", "input": "FORMAT", "output": "FORMAT", "key": "KEY", "key-delimiter": "DELIM",
	"header": "KEY=VALUE", "cpuprofile": "FILE",
}

// add registers v under name with its variable read now.
func (f *flags) add(v flag.Value, name, kind, help, def string) {
	if k, ok := stringKinds[name]; ok && kind == "string" {
		kind = k
	}
	info := &flagInfo{name: name, kind: kind, help: help, def: def, section: f.section, env: f.envPrefix + envWord(name)}
	if f.section == sectionConn {
		info.env = "SHALE_" + envWord(name)
	}
	if s, ok := os.LookupEnv(info.env); ok {
		if err := v.Set(s); err != nil {
			f.envErrs = append(f.envErrs, fmt.Errorf("%s=%q: %w", info.env, s, err))
		}
		info.fromEnv = true
	}
	f.infos = append(f.infos, info)
	f.fs.Var(v, name, help)
}

func (f *flags) String(name, def, help string) *string {
	p := &def
	f.add((*stringValue)(p), name, "string", help, quoteDef(def))
	return p
}

// StringDef is String with the default described in words.
func (f *flags) StringDef(name, def, defText, help string) *string {
	p := &def
	f.add((*stringValue)(p), name, "string", help, defText)
	return p
}

func quoteDef(s string) string {
	if s == "" {
		return ""
	}
	return strconv.Quote(s)
}

// Strings is a repeatable flag.
func (f *flags) Strings(name, help string) *[]string {
	p := new([]string)
	f.add((*stringsValue)(p), name, "string", help+" (repeatable)", "")
	return p
}

func (f *flags) Bool(name string, def bool, help string) *bool {
	p := &def
	f.add((*boolValue)(p), name, "", help, "")
	return p
}

// Count is a whole number in [lo, hi]; unit suffixes are refused.
func (f *flags) Count(name string, def, lo, hi int64, help string) *int64 {
	p := &def
	f.add(&countValue{p: p, lo: lo, hi: hi}, name, "N", help, strconv.FormatInt(def, 10))
	return p
}

// Int is Count for callers that want an int, with at least 1.
func (f *flags) Int(name string, def int, help string) *int {
	p := &def
	f.add(&intValue{p: p}, name, "N", help, strconv.Itoa(def))
	return p
}

// Size is a byte count of at least lo, with an optional KiB/MiB/GiB suffix.
func (f *flags) Size(name string, def, lo int64, help string) *int64 {
	p := &def
	f.add(&sizeValue{p: p, lo: lo}, name, "SIZE", help, formatSize(def))
	return p
}

// SizeInt is Size for callers that want an int, with at least 1.
func (f *flags) SizeInt(name string, def int, help string) *int {
	p := &def
	f.add(&sizeIntValue{p: p}, name, "SIZE", help, formatSize(int64(def)))
	return p
}

// Duration is a positive duration: Go syntax (250ms, 1h30m) or days (7d).
func (f *flags) Duration(name string, def time.Duration, help string) *time.Duration {
	p := &def
	f.add(&durationValue{p: p}, name, "DURATION", help, def.String())
	return p
}

// DurationDef is Duration with the default described in words; zero is
// allowed and means what help says.
func (f *flags) DurationDef(name string, def time.Duration, defText, help string) *time.Duration {
	p := &def
	f.add(&durationValue{p: p, zeroOK: true}, name, "DURATION", help, defText)
	return p
}

// last returns the info of the flag added last, to adjust its help.
func (f *flags) last() *flagInfo { return f.infos[len(f.infos)-1] }

// set reports whether a flag was given, on the command line or by its
// variable, and which.
func (f *flags) set(name string) (cmdline, env bool) {
	f.fs.Visit(func(fl *flag.Flag) {
		if fl.Name == name {
			cmdline = true
		}
	})
	for _, i := range f.infos {
		if i.name == name {
			env = i.fromEnv
		}
	}
	return cmdline, env
}

func (f *flags) given(name string) bool {
	c, e := f.set(name)
	return c || e
}

// errHelp is returned for --help after help was printed: exit status 0.
var errHelp = flag.ErrHelp

// parse parses args, allowing flags after positional arguments
// ("produce TOPIC --key k" as well as "produce --key k TOPIC"). Errors are
// usage errors; --help prints help and returns errHelp.
func (f *flags) parse(args []string) ([]string, error) {
	if err := errors.Join(f.envErrs...); err != nil {
		return nil, usageError{err}
	}
	var pos []string
	for {
		if err := f.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.usage()
				return nil, errHelp
			}
			// The flag package names flags with one dash; shale's help uses two.
			msg := strings.NewReplacer("for flag -", "for flag --", "not defined: -", "not defined: --").Replace(err.Error())
			return nil, usageError{errors.New(msg)}
		}
		args = f.fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// usage prints the command's help to stdout.
func (f *flags) usage() {
	w := f.stdout
	fmt.Fprintf(w, "Usage: shale %s\n", f.synopsis)
	if f.about != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(f.about))
	}
	if f.example != "" {
		fmt.Fprintf(w, "\nExample:\n")
		for _, l := range strings.Split(strings.TrimSpace(f.example), "\n") {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	for _, s := range []section{sectionCommand, sectionConn, sectionNode} {
		first := true
		for _, i := range f.infos {
			if i.section != s || i.hidden {
				continue
			}
			if first {
				title := sectionTitles[s]
				if s == sectionNode && f.cmd != "serve" && f.cmd != "bench" {
					title = "With --store (run a short-lived node on the bucket instead of using a server)"
				}
				fmt.Fprintf(w, "\n%s:\n", title)
				first = false
			}
			name := "--" + i.name
			if i.kind != "" {
				name += " " + i.kind
			}
			fmt.Fprintf(w, "  %s\n      %s", name, i.help)
			if i.def != "" {
				fmt.Fprintf(w, " (default %s)", i.def)
			}
			fmt.Fprintf(w, " [$%s]\n", i.env)
		}
	}
}

type stringValue string

func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }
func (s *stringValue) String() string     { return string(*s) }

type stringsValue []string

func (s *stringsValue) Set(v string) error { *s = append(*s, v); return nil }
func (s *stringsValue) String() string     { return strings.Join(*s, ",") }

type boolValue bool

func (b *boolValue) Set(v string) error {
	x, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%q is not true or false", v)
	}
	*b = boolValue(x)
	return nil
}
func (b *boolValue) String() string   { return strconv.FormatBool(bool(*b)) }
func (b *boolValue) IsBoolFlag() bool { return true }

type countValue struct {
	p      *int64
	lo, hi int64
}

func (c *countValue) Set(v string) error {
	n, err := parseCount(v, c.lo, c.hi)
	if err == nil {
		*c.p = n
	}
	return err
}
func (c *countValue) String() string {
	if c.p == nil {
		return ""
	}
	return strconv.FormatInt(*c.p, 10)
}

type intValue struct{ p *int }

func (c *intValue) Set(v string) error {
	n, err := parseCount(v, 1, math.MaxInt32)
	if err == nil {
		*c.p = int(n)
	}
	return err
}
func (c *intValue) String() string {
	if c.p == nil {
		return ""
	}
	return strconv.Itoa(*c.p)
}

type sizeValue struct {
	p  *int64
	lo int64
}

func (s *sizeValue) Set(v string) error {
	n, err := parseSize(v)
	if err == nil && n < s.lo {
		err = fmt.Errorf("must be at least %d", s.lo)
	}
	if err == nil {
		*s.p = n
	}
	return err
}
func (s *sizeValue) String() string {
	if s.p == nil {
		return ""
	}
	return strconv.FormatInt(*s.p, 10)
}

type sizeIntValue struct{ p *int }

func (s *sizeIntValue) Set(v string) error {
	n, err := parseSize(v)
	if err == nil && (n < 1 || n > math.MaxInt32) {
		err = fmt.Errorf("must be between 1 and %d", math.MaxInt32)
	}
	if err == nil {
		*s.p = int(n)
	}
	return err
}
func (s *sizeIntValue) String() string {
	if s.p == nil {
		return ""
	}
	return strconv.Itoa(*s.p)
}

type durationValue struct {
	p      *time.Duration
	zeroOK bool
}

func (d *durationValue) Set(v string) error {
	x, err := parseDuration(v)
	if err == nil && (x < 0 || x == 0 && !d.zeroOK) {
		err = errors.New("must be positive")
	}
	if err == nil {
		*d.p = x
	}
	return err
}
func (d *durationValue) String() string {
	if d.p == nil {
		return ""
	}
	return d.p.String()
}
