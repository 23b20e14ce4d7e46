package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/hubgate/hubgate/caddymodule/audit"
	"github.com/hubgate/hubgate/caddymodule/pages"
	"github.com/hubgate/hubgate/policies"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "hubgate",
		Usage: "check-policy [--diff OLD NEW] <file-or-folder>... | who-can <file-or-folder>... <user> [<group>...] | verify-audit [--jwks FILE|--key FILE] FILE... | offboard --dry-run --policy <file-or-folder>",
		Short: "Checks hubgate policies and explains what a user gets",
		Long: `
check-policy validates policy files (or folders of them) as the gateway
would load them. It prints every problem with its file, line and field and
exits 1, or prints a one-line summary and exits 0.

who-can prints which teams, images and repos a user gets from the policy,
and why: by membership, or through which identity provider group. Groups
look like "github:org/team" or "oidc:researchers".

check-policy --diff OLD NEW prints, per user, what they gain or lose between
two policies (teams, images, repos, GitHub token, limits, admin), for a
review before merging a policy change; it exits 1 when either side has
errors.

verify-audit checks the hash chain and the signed checkpoints of audit log
files (oldest first) and names the first removed, reordered or edited
record, or prints "ok: N records, M checkpoints".

offboard --dry-run lists the homes of users out of the policy and when
the policy's retention deletes them (never without a retention).`,
		CobraFunc: func(cmd *cobra.Command) {
			checkCmd := &cobra.Command{
				Use:   "check-policy [--diff OLD NEW] <file-or-folder>...",
				Short: "Validates policy files",
				Args:  cobra.MinimumNArgs(1),
				// Problems are printed one per line; no usage text after them.
				SilenceUsage: true,
				RunE: func(cmd *cobra.Command, args []string) error {
					if diff, _ := cmd.Flags().GetBool("diff"); diff {
						if j, _ := cmd.Flags().GetBool("json"); j {
							args = append([]string{"--json"}, args...)
						}
						if code := policies.RunDiff(args, cmd.OutOrStdout()); code != 0 {
							return fmt.Errorf("policy diff failed (exit %d)", code)
						}
						return nil
					}
					return exitCode(checkPolicy(cmd.OutOrStdout(), args))
				},
			}
			checkCmd.Flags().Bool("diff", false, "print what each user gains or loses from OLD to NEW")
			checkCmd.Flags().Bool("json", false, "with --diff: the changes as JSON")
			cmd.AddCommand(checkCmd)
			cmd.AddCommand(offboardCommand())
			cmd.AddCommand(&cobra.Command{
				Use:                "verify-audit [--jwks FILE|--key FILE] FILE...",
				Short:              "Verifies the hash chain and signed checkpoints of audit logs",
				DisableFlagParsing: true,
				SilenceUsage:       true,
				RunE: func(cmd *cobra.Command, args []string) error {
					if code := audit.RunVerify(args, cmd.OutOrStdout()); code != 0 {
						return fmt.Errorf("audit log verification failed (exit %d)", code)
					}
					return nil
				},
			})
			cmd.AddCommand(&cobra.Command{
				Use:          "who-can <file-or-folder>... <user> [<group>...]",
				Short:        "Explains what a user gets from the policy",
				Args:         cobra.MinimumNArgs(2),
				SilenceUsage: true,
				RunE: func(cmd *cobra.Command, args []string) error {
					return exitCode(whoCan(cmd.OutOrStdout(), args))
				},
			})
		},
	})
}

// exitCode turns a command's result into caddy's exit convention.
func exitCode(code int, err error) error {
	if err == nil && code == 0 {
		return nil
	}
	if err == nil {
		err = errors.New("policy check failed")
	}
	return err
}

// checkPolicy loads the files and reports the result.
func checkPolicy(out io.Writer, paths []string) (int, error) {
	pol, err := policies.Load(paths...)
	if err != nil {
		var probs policies.Errors
		if errors.As(err, &probs) {
			for _, p := range probs {
				fmt.Fprintln(out, p.String())
			}
			return 1, fmt.Errorf("%d problem(s) in %s", len(probs), strings.Join(paths, ", "))
		}
		return 1, err
	}
	fmt.Fprintf(out, "ok: %s\n", pol.Summary())
	return 0, nil
}

// whoCan splits its arguments into paths (those that exist), the user and
// groups, and explains the user's grant.
func whoCan(out io.Writer, args []string) (int, error) {
	var paths []string
	i := 0
	for ; i < len(args); i++ {
		if _, err := os.Stat(args[i]); err != nil {
			break
		}
		paths = append(paths, args[i])
	}
	if len(paths) == 0 {
		return 1, fmt.Errorf("no policy file or folder found in %q", args)
	}
	if i >= len(args) {
		return 1, errors.New("missing the user name after the policy files")
	}
	user := policies.NormalizeUser(args[i])
	groups := args[i+1:]
	pol, err := policies.Load(paths...)
	if err != nil {
		return checkPolicy(out, paths)
	}
	g := pol.Grant(user, groups)
	fmt.Fprintf(out, "user: %s", user)
	if len(groups) > 0 {
		fmt.Fprintf(out, " (groups: %s)", strings.Join(groups, ", "))
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "admin: %s\n", yesNo(g.Admin))
	if !pol.Known(user, groups) {
		fmt.Fprintln(out, "not in the policy: this user is refused everything")
		return 0, nil
	}
	normGroups := make([]string, len(groups))
	for j, gr := range groups {
		normGroups[j] = policies.NormalizeGroup(gr)
	}
	names := make([]string, 0, len(pol.Teams))
	for n := range pol.Teams {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(out, "teams:")
	for _, n := range names {
		t := pol.Teams[n]
		var why []string
		if slices.Contains(t.Members, user) {
			why = append(why, "member")
		}
		for _, gr := range t.Groups {
			if slices.Contains(normGroups, policies.NormalizeGroup(gr)) {
				why = append(why, "group "+gr)
			}
		}
		if len(why) == 0 {
			continue
		}
		fmt.Fprintf(out, "  %s (%s): images %s; repos %s\n", n, strings.Join(why, ", "), list(t.Images), list(t.Repos))
	}
	fmt.Fprintf(out, "images: %s\n", list(g.Images))
	fmt.Fprintf(out, "repos: %s\n", list(g.Repos))
	fmt.Fprintf(out, "limits: memory %s, cpus %s, pids %s\n", bytesText(g.Limits.Memory), numText(g.Limits.CPUs), numText(float64(g.Limits.Pids)))
	fmt.Fprintf(out, "idle timeout: %s; max age: %s\n", durText(g.IdleTimeout), durText(g.MaxAge))
	fmt.Fprintf(out, "github token to containers: %s\n", yesNo(g.GitHubToken))
	fmt.Fprintf(out, "egress (with the egress proxy): %s\n", list(g.Egress))
	fmt.Fprintln(out, "(several teams: union of images and repos, the largest limits, the longest timeouts)")
	return 0, nil
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func bytesText(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return pages.BytesText(n)
}

func numText(f float64) string {
	if f <= 0 {
		return "unlimited"
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", f), "0"), ".")
}

func durText(d time.Duration) string {
	if d <= 0 {
		return "none"
	}
	return d.String()
}
