package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shalelog/shale/httpapi"
)

const groupUsage = `Usage: shale group COMMAND [flags]

Consumer groups: the groups Kafka clients join (group.id), and those
'shale consume --group' resumes from. Every node serves every group.

Commands:
  list
  describe GROUP
  reset GROUP --topic T --to-earliest|--to-latest|--to-offset N|--to-time T|--shift-by N
  delete GROUP

Run 'shale group COMMAND --help' for a command's flags and an example.
`

func runGroup(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, groupUsage)
		return usagef("missing command: list, describe, reset or delete")
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdout, groupUsage)
		return nil
	}
	sub := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"list": runGroupList, "describe": runGroupDescribe, "reset": runGroupReset, "delete": runGroupDelete,
	}[args[0]]
	if sub == nil {
		return usagef("unknown command group %q: want list, describe, reset or delete", args[0])
	}
	if err := sub(ctx, args[1:], stdout, stderr); err != nil {
		return subcommandError{name: "group " + args[0], err: err}
	}
	return nil
}

// serverOnly refuses --store for commands on groups: groups are
// coordinated by running nodes, which a short-lived one is not.
func serverOnly(cf clientFlags, cmd string) error {
	if err := cf.check(); err != nil {
		return err
	}
	if *cf.node.store != "" {
		return usagef("%s talks to a running server (--server): consumer groups are coordinated by the nodes that serve them, not by a short-lived node on --store", cmd)
	}
	return nil
}

// groupName parses args of a command that takes one group name.
func groupName(f *flags, args []string) (string, error) {
	pos, err := f.parse(args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 || pos[0] == "" {
		return "", usagef("%s takes one group name", f.cmd)
	}
	return pos[0], nil
}

func runGroupList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("group list", "group list [flags]", stdout)
	f.about = "Lists consumer groups, one per line: GROUP<TAB>STATE<TAB>MEMBERS."
	f.example = "shale group list --server http://10.0.0.7:8092"
	cf := addClientFlags(f)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("group list takes no arguments")
	}
	if err := serverOnly(cf, "group list"); err != nil {
		return err
	}
	a, done, err := cf.connect(ctx, stderr)
	if err != nil {
		return err
	}
	defer done()
	gs, err := a.groups(ctx)
	if err != nil {
		return err
	}
	for _, g := range gs {
		fmt.Fprintf(stdout, "%s\t%s\t%d\n", g.Group, g.State, g.Members)
	}
	return nil
}

func runGroupDescribe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("group describe", "group describe GROUP [flags]", stdout)
	f.about = `Prints a group's state, each partition's committed offset, end offset and
lag (end - committed), and its members with their assigned partitions.`
	f.example = "shale group describe billing"
	cf := addClientFlags(f)
	name, err := groupName(f, args)
	if err != nil {
		return err
	}
	if err := serverOnly(cf, "group describe"); err != nil {
		return err
	}
	a, done, err := cf.connect(ctx, stderr)
	if err != nil {
		return err
	}
	defer done()
	d, ok, err := a.describeGroup(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("no group %s (it has no members and no committed offsets)", name)
	}
	fmt.Fprintf(stdout, "group %s  state %s  generation %d  coordinator %s  members %d\n", d.Group, d.State, d.Generation, d.Coordinator, len(d.Members))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG")
	for _, o := range d.Offsets {
		end, lag := fmt.Sprint(o.End), fmt.Sprint(o.Lag)
		if o.End < 0 {
			end, lag = "-", "-" // the topic or partition is gone
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", o.Topic, o.Partition, o.Committed, end, lag)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(d.Members) == 0 {
		return nil
	}
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tCLIENT\tHOST\tASSIGNMENT")
	for _, m := range d.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.ID, m.ClientID, m.Host, formatAssignment(m.Assignment))
	}
	return tw.Flush()
}

// formatAssignment prints topic:0,1 topic2:3, or - when the node does not
// know it (another node coordinates the group).
func formatAssignment(a map[string][]int32) string {
	if len(a) == 0 {
		return "-"
	}
	var ts []string
	for t := range a {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	var parts []string
	for _, t := range ts {
		ps := append([]int32(nil), a[t]...)
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = fmt.Sprint(p)
		}
		parts = append(parts, t+":"+strings.Join(s, ","))
	}
	return strings.Join(parts, " ")
}

const groupResetAbout = `Sets a group's committed offsets in every partition of --topic (or only
--partition): to the earliest or latest offset, to offset N, to the first
record at or after a time, or shifted by N from the committed offset. The
new offsets are computed here and clamped to each partition's range, then
committed in one request. Refused while the group has live members (stop
its consumers first, as Kafka requires); they resume from the new offsets
when they next start. --dry-run prints the plan without committing.
Times are RFC 3339 (2026-11-30T08:00:00Z), dates (2026-11-30, UTC) or
milliseconds since the epoch.`

const groupResetExample = `shale group reset billing --topic orders --to-time 2026-10-31   # replay from Oct 31
shale group reset billing --topic orders --to-latest                # skip the backlog
shale group reset billing --topic orders --partition 3 --shift-by -100 --dry-run`

func runGroupReset(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("group reset", "group reset GROUP --topic T (--to-earliest|--to-latest|--to-offset N|--to-time T|--shift-by N) [flags]", stdout)
	f.about, f.example = groupResetAbout, groupResetExample
	topic := f.String("topic", "", "the topic whose offsets to set (required)")
	partition := f.Count("partition", -1, math.MinInt32, math.MaxInt32, "only this partition (default: every partition)")
	f.last().def = ""
	earliest := f.Bool("to-earliest", false, "each partition's first retained offset")
	latest := f.Bool("to-latest", false, "each partition's end (the next offset to be written)")
	toOffset := f.Count("to-offset", -1, 0, math.MaxInt64, "offset N, clamped to each partition's range")
	f.last().def = ""
	toTime := f.String("to-time", "", "the first record at or after this time")
	shift := f.Count("shift-by", 0, math.MinInt64+1, math.MaxInt64, "the committed offset plus N (negative to go back), clamped")
	f.last().def = ""
	dry := f.Bool("dry-run", false, "print the new offsets without committing them")
	cf := addClientFlags(f)
	name, err := groupName(f, args)
	if err != nil {
		return err
	}
	if *topic == "" {
		return usagef("--topic is required")
	}
	modes := 0
	for _, m := range []string{"to-earliest", "to-latest", "to-offset", "to-time", "shift-by"} {
		if f.given(m) {
			modes++
		}
	}
	if modes != 1 {
		return usagef("give exactly one of --to-earliest, --to-latest, --to-offset, --to-time and --shift-by")
	}
	var at time.Time
	if *toTime != "" {
		if at, err = parseTime(*toTime); err != nil {
			return usagef("--to-time: %v", err)
		}
	}
	if err := serverOnly(cf, "group reset"); err != nil {
		return err
	}
	a, done, err := cf.connect(ctx, stderr)
	if err != nil {
		return err
	}
	defer done()
	td, err := a.describe(ctx, *topic)
	if err != nil {
		return err
	}
	if f.given("partition") && (*partition < 0 || *partition >= int64(td.Partitions)) {
		return usagef("--partition %d: topic %s has partitions 0 to %d", *partition, *topic, td.Partitions-1)
	}
	gd, _, err := a.describeGroup(ctx, name)
	if err != nil {
		return err
	}
	// Checked here for a clear message before any work; the server checks
	// again when it commits, atomically.
	if len(gd.Members) > 0 {
		return fmt.Errorf("group %s: %w", name, errGroupActive)
	}
	committed := map[int32]int64{}
	for _, o := range gd.Offsets {
		if o.Topic == *topic {
			committed[o.Partition] = o.Committed
		}
	}
	var offs []httpapi.PartitionOffset
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tOLD\tNEW")
	for _, info := range td.Parts {
		p := info.Partition
		if f.given("partition") && int64(p) != *partition {
			continue
		}
		var n int64
		switch {
		case *earliest:
			n = info.Start
		case *latest:
			n = info.End
		case f.given("to-offset"):
			n = *toOffset
		case *toTime != "":
			if n, err = a.offsetForTime(ctx, *topic, p, at); err != nil {
				return fmt.Errorf("partition %d: %w", p, err)
			}
		default:
			c, ok := committed[p]
			if !ok {
				return fmt.Errorf("partition %d has no committed offset to shift: use --to-earliest, --to-latest, --to-offset or --to-time", p)
			}
			n = c + *shift
			if *shift > 0 && n < c { // overflow
				n = info.End
			}
		}
		n = min(max(n, info.Start), info.End)
		old := "-"
		if c, ok := committed[p]; ok {
			old = fmt.Sprint(c)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", *topic, p, old, n)
		offs = append(offs, httpapi.PartitionOffset{Topic: *topic, Partition: p, Offset: n})
	}
	if *dry {
		tw.Flush()
		fmt.Fprintln(stdout, "dry run: nothing committed")
		return nil
	}
	if err := a.setGroupOffsets(ctx, name, offs); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "group %s: committed %d offsets of topic %s\n", name, len(offs), *topic)
	return nil
}

func runGroupDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("group delete", "group delete GROUP [flags]", stdout)
	f.about = "Deletes a group and its committed offsets. Refused while the group has live members."
	f.example = "shale group delete billing"
	cf := addClientFlags(f)
	name, err := groupName(f, args)
	if err != nil {
		return err
	}
	if err := serverOnly(cf, "group delete"); err != nil {
		return err
	}
	a, done, err := cf.connect(ctx, stderr)
	if err != nil {
		return err
	}
	defer done()
	if err := a.deleteGroup(ctx, name); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted group %s\n", name)
	return nil
}
