package docker

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/hubgate/hubgate/spawner"
)

// List returns every server of this deployment, running or not, sorted by
// container name, with one engine API call (a container list filtered on the
// deployment label). The list answer carries no start time, so Started is
// zero here (hubgate never restarts a container in place, so Created is
// close to the start time of a running one); Get fills Started.
func (s *Spawner) list(ctx context.Context) ([]spawner.Instance, error) {
	lctx, cancel := s.apiCtx(ctx)
	defer cancel()
	cs, err := s.cli.ContainerList(lctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", LabelDeployment+"="+s.cfg.Prefix)),
	})
	if err != nil {
		return nil, fmt.Errorf("list servers of deployment %s: %w", s.cfg.Prefix, err)
	}
	out := make([]spawner.Instance, 0, len(cs))
	for _, c := range cs {
		if c.Labels[LabelUser] == "" || c.Labels[LabelServer] == "" {
			continue // labelled by hand, not ours to report
		}
		out = append(out, s.fromSummary(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// fromSummary converts a container list entry into an Instance.
func (s *Spawner) fromSummary(c container.Summary) spawner.Instance {
	inst := fromLabels(c.Labels)
	inst.ID = c.ID
	if len(c.Names) > 0 {
		inst.Name = trimSlash(c.Names[0])
	}
	inst.Status = c.State
	inst.Running = c.State == container.StateRunning
	if c.Created > 0 {
		inst.Created = time.Unix(c.Created, 0).UTC()
	} else {
		inst.Created = parseTime(c.Labels[LabelCreated])
	}
	if c.NetworkSettings != nil {
		inst.Addr = s.addr(c.NetworkSettings.Networks, c.Labels, inst.Running)
	}
	return inst
}
