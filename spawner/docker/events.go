package docker

import (
	"context"
	"fmt"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/hubgate/hubgate/spawner"
)

// WatchExits implements spawner.ExitWatcher with the engine's event stream,
// filtered to this deployment's containers. It is one long-lived API call,
// not one per request.
func (s *Spawner) WatchExits(ctx context.Context, fn func(user, server, containerID string)) error {
	f := filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("label", LabelDeployment+"="+s.cfg.Prefix),
		filters.Arg("event", string(events.ActionDie)),
		filters.Arg("event", string(events.ActionStop)),
		filters.Arg("event", string(events.ActionDestroy)),
	)
	msgs, errs := s.cli.Events(ctx, events.ListOptions{Filters: f})
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			return engineErr(fmt.Errorf("watch container events: %w", err))
		case m := <-msgs:
			user, server := m.Actor.Attributes[LabelUser], m.Actor.Attributes[LabelServer]
			if user != "" && server != "" {
				fn(user, server, m.Actor.ID)
			}
		}
	}
}

var _ spawner.ExitWatcher = (*Spawner)(nil)
