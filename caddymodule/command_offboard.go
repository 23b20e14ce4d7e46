package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/spf13/cobra"

	"github.com/hubgate/hubgate/caddymodule/backup"
	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner/docker"
)

// offboardCommand is `caddy hubgate offboard --dry-run`: who the policy's
// retention would offboard, and when. It reads the policy, the homes on
// the Docker engine (by the deployment's labels) and the retention clocks
// in Caddy's file storage, and changes nothing: offboarding itself runs
// only inside the gateway, after a verified final backup.
func offboardCommand() *cobra.Command {
	c := &cobra.Command{
		Use:          "offboard --dry-run --policy <file-or-folder> [--name <deployment>] [--storage <folder>] [--docker-host <host>]",
		Short:        "Lists the homes the policy's retention would delete, and when",
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dry, _ := cmd.Flags().GetBool("dry-run")
			if !dry {
				return errors.New("offboard only lists (--dry-run): the gateway itself offboards, after a verified final backup")
			}
			paths, _ := cmd.Flags().GetStringSlice("policy")
			name, _ := cmd.Flags().GetString("name")
			dir, _ := cmd.Flags().GetString("storage")
			host, _ := cmd.Flags().GetString("docker-host")
			return offboardDryRun(cmd.OutOrStdout(), paths, name, dir, host, time.Now())
		},
	}
	c.Flags().Bool("dry-run", false, "list who would be affected and when (required)")
	c.Flags().StringSlice("policy", nil, "the policy files or folders (as in the Caddyfile)")
	c.Flags().String("name", defaultName, "the deployment's name")
	c.Flags().String("storage", "", "Caddy's storage folder (default: Caddy's data folder)")
	c.Flags().String("docker-host", "", "the Docker engine (default: DOCKER_HOST or the local socket)")
	return c
}

func offboardDryRun(out io.Writer, paths []string, name, dir, host string, now time.Time) error {
	if len(paths) == 0 {
		return errors.New("--policy is required")
	}
	pol, err := policies.Load(paths...)
	if err != nil {
		return fmt.Errorf("load policy: %w", err)
	}
	if dir == "" {
		dir = caddy.AppDataDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sp, err := docker.New(docker.Config{Host: host, Prefix: name}, nil)
	if err != nil {
		return err
	}
	defer sp.Close()
	homes, err := sp.Homes(ctx)
	if err != nil {
		return err
	}
	states, err := backup.LoadStates(ctx, &certmagic.FileStorage{Path: dir}, session.StoragePrefix(name))
	if err != nil {
		return fmt.Errorf("read the retention clocks: %w", err)
	}
	list := backup.Forecast(pol, homes, states, now)
	retention := "forever: no home is ever deleted"
	if pol.Retention > 0 {
		retention = pol.Retention.String()
	}
	fmt.Fprintf(out, "%d homes, %d of users out of the policy; retention %s\n", len(homes), len(list), retention)
	if len(list) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tOUT OF THE POLICY SINCE\tDELETED AT\tLEFT")
	for _, p := range list {
		since := p.MissingSince.UTC().Format(time.RFC3339)
		if _, ok := states[p.User]; !ok || states[p.User].MissingSince.IsZero() {
			since += " (clock starts now)"
		}
		at, left := "never", "-"
		if !p.Deadline.IsZero() {
			at, left = p.Deadline.UTC().Format(time.RFC3339), "due now"
			if d := p.Deadline.Sub(now).Round(time.Second); d > 0 {
				left = d.String()
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.User, since, at, left)
	}
	return tw.Flush()
}
