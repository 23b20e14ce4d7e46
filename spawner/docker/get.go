package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"

	"github.com/hubgate/hubgate/spawner"
)

// Get returns the user's server, running or not. It wraps
// spawner.ErrNotFound when there is no such container. Addr is empty unless
// the container is running.
func (s *Spawner) get(ctx context.Context, user, server string) (spawner.Instance, error) {
	if err := validateKey(user, server); err != nil {
		return spawner.Instance{}, fmt.Errorf("get server for %s/%s: %w", user, server, err)
	}
	c, err := s.inspect(ctx, s.containerName(user, server), user, server)
	if err != nil {
		return spawner.Instance{}, fmt.Errorf("get server for %s/%s: %w", user, server, err)
	}
	return s.fromInspect(c), nil
}

// inspect inspects the container called (or with ID) ref and checks that it
// belongs to this deployment's user and server. It wraps spawner.ErrNotFound
// when the container does not exist.
func (s *Spawner) inspect(ctx context.Context, ref, user, server string) (container.InspectResponse, error) {
	ictx, cancel := s.apiCtx(ctx)
	defer cancel()
	c, err := s.cli.ContainerInspect(ictx, ref)
	if cerrdefs.IsNotFound(err) {
		return c, fmt.Errorf("%w: container %s", spawner.ErrNotFound, ref)
	}
	if err != nil {
		return c, fmt.Errorf("inspect container %s: %w", ref, err)
	}
	if c.ContainerJSONBase == nil || c.Config == nil || c.State == nil {
		return c, fmt.Errorf("inspect container %s: incomplete answer from the engine", ref)
	}
	l := c.Config.Labels
	if l[LabelDeployment] != s.cfg.Prefix || l[LabelUser] != user || l[LabelServer] != server {
		return c, fmt.Errorf("container %s exists but is not hubgate deployment %s's server %s/%s (labels %s=%q %s=%q %s=%q)",
			ref, s.cfg.Prefix, user, server,
			LabelDeployment, l[LabelDeployment], LabelUser, l[LabelUser], LabelServer, l[LabelServer])
	}
	return c, nil
}

// isNotFound reports whether err wraps spawner.ErrNotFound.
func isNotFound(err error) bool { return errors.Is(err, spawner.ErrNotFound) }

// fromInspect converts an inspected container into an Instance.
func (s *Spawner) fromInspect(c container.InspectResponse) spawner.Instance {
	inst := fromLabels(c.Config.Labels)
	inst.ID = c.ID
	inst.Name = trimSlash(c.Name)
	inst.Status = c.State.Status
	inst.Running = c.State.Running
	inst.Created = parseTime(c.Created)
	inst.Started = parseTime(c.State.StartedAt)
	inst.ImageID = c.Image
	if inst.Created.IsZero() {
		inst.Created = parseTime(c.Config.Labels[LabelCreated])
	}
	if c.NetworkSettings != nil {
		inst.Addr = s.addr(c.NetworkSettings.Networks, c.Config.Labels, inst.Running)
	}
	return inst
}

// fromLabels fills the Instance fields that come from labels.
func fromLabels(l map[string]string) spawner.Instance {
	inst := spawner.Instance{
		User:   l[LabelUser],
		Server: l[LabelServer],
		Image:  l[LabelImage],
		Nonce:  l[LabelNonce],
	}
	for k, v := range l {
		if key, ok := strings.CutPrefix(k, LabelMetaPrefix); ok {
			if inst.Meta == nil {
				inst.Meta = make(map[string]string)
			}
			inst.Meta[key] = v
		}
	}
	return inst
}

// addr returns "ip:port" from the container's endpoint on our network and
// its port label, or "" when it is not running or has no address there.
func (s *Spawner) addr(nets map[string]*network.EndpointSettings, labels map[string]string, running bool) string {
	if !running {
		return ""
	}
	ep := nets[s.cfg.Network]
	if ep == nil || ep.IPAddress == "" || labels[LabelPort] == "" {
		return ""
	}
	return net.JoinHostPort(ep.IPAddress, labels[LabelPort])
}

// parseTime parses an engine timestamp; the zero time for "" or garbage,
// and for the engine's "0001-01-01T00:00:00Z" (never started).
func parseTime(v string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// trimSlash drops the leading '/' the engine puts on container names.
func trimSlash(name string) string {
	if len(name) > 0 && name[0] == '/' {
		return name[1:]
	}
	return name
}
