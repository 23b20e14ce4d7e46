package policies

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
)

// DiffUsage is the usage line of the diff command.
const DiffUsage = "check-policy --diff [--json] OLD NEW"

// RunDiff is `caddy hubgate check-policy --diff [--json] OLD NEW` (args
// without "--diff"): OLD and NEW are each a policy file or folder. Both are
// loaded and validated as the gateway would; their problems are printed as
// check-policy prints them and the exit code is 1. Otherwise it prints the
// access diff (Lines, or JSON with --json) and returns 0, whether or not
// anything changed. Usage errors return 2.
func RunDiff(args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet("check-policy --diff", flag.ContinueOnError)
	fs.SetOutput(stdout)
	asJSON := fs.Bool("json", false, "print the diff as JSON")
	fs.Usage = func() { fmt.Fprintln(stdout, "usage: caddy hubgate "+DiffUsage) }
	var paths []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		paths = append(paths, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(paths) != 2 {
		fmt.Fprintf(stdout, "check-policy --diff: want the old and the new policy (file or folder each), got %d argument(s)\n", len(paths))
		fs.Usage()
		return 2
	}
	var pols [2]*Policy
	failed := false
	for i, side := range []string{"old", "new"} {
		p, err := Load(paths[i])
		if err != nil {
			failed = true
			var probs Errors
			if errors.As(err, &probs) {
				for _, pr := range probs {
					fmt.Fprintln(stdout, pr.String())
				}
				fmt.Fprintf(stdout, "%d problem(s) in the %s policy %s\n", len(probs), side, paths[i])
			} else {
				fmt.Fprintf(stdout, "the %s policy %s: %v\n", side, paths[i], err)
			}
			continue
		}
		pols[i] = p
	}
	if failed {
		return 1
	}
	d := Diff(pols[0], pols[1])
	if *asJSON {
		b, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			fmt.Fprintln(stdout, "check-policy --diff:", err)
			return 2
		}
		fmt.Fprintln(stdout, string(b))
		return 0
	}
	fmt.Fprint(stdout, d.Text())
	return 0
}
