package docker

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/spawner"
)

// iccOption is the bridge driver option that allows inter-container traffic.
const iccOption = "com.docker.network.bridge.enable_icc"

// ensureNetwork makes sure the deployment's network exists, creating it if
// needed. Success is remembered; forgetNetwork undoes that when the network
// turns out to be gone. image (present on the engine) is used for the
// creation lock, see lockNetwork.
func (s *Spawner) ensureNetwork(ctx context.Context, image string) error {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	if s.netReady {
		return nil
	}
	name := s.cfg.Network

	if id, err := s.canonicalNetwork(ctx); err != nil {
		return err
	} else if id != "" {
		s.netID, s.netReady = id, true
		return nil
	}

	// The engine's duplicate-name check is not atomic: gateways racing to
	// create the network could each make one, and a container naming an
	// ambiguous network cannot start. Serialise creation on the engine.
	unlock, err := s.lockNetwork(ctx, image)
	if err != nil {
		return err
	}
	defer unlock()
	if id, err := s.canonicalNetwork(ctx); err != nil {
		return err
	} else if id != "" {
		s.netID, s.netReady = id, true
		return nil
	}

	opts := network.CreateOptions{
		Driver:   "bridge",
		Internal: s.cfg.Internal,
		Labels:   map[string]string{LabelDeployment: s.cfg.Prefix},
	}
	if s.cfg.Isolate {
		opts.Options = map[string]string{iccOption: "false"}
	}
	cctx, cancel := s.apiCtx(ctx)
	resp, err := s.cli.NetworkCreate(cctx, name, opts)
	cancel()
	switch {
	case cerrdefs.IsConflict(err):
		// Another process created it first.
	case err != nil:
		return fmt.Errorf("create network %s: %w", name, err)
	default:
		s.log.Info("created network", zap.String("network", name),
			zap.String("network_id", resp.ID), zap.Bool("isolate", s.cfg.Isolate), zap.Bool("internal", s.cfg.Internal))
	}
	id, err := s.canonicalNetwork(ctx)
	if err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("network %s vanished right after its creation", name)
	}
	s.netID, s.netReady = id, true
	return nil
}

// canonicalNetwork returns the ID of the oldest network named like the
// deployment's ("" when there is none), and removes this deployment's
// empty duplicates that a creation race left behind.
func (s *Spawner) canonicalNetwork(ctx context.Context) (string, error) {
	name := s.cfg.Network
	lctx, cancel := s.apiCtx(ctx)
	nets, err := s.cli.NetworkList(lctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	cancel()
	if err != nil {
		return "", fmt.Errorf("list networks named %s: %w", name, err)
	}
	var same []network.Summary
	for _, n := range nets {
		if n.Name == name {
			same = append(same, n)
		}
	}
	if len(same) == 0 {
		return "", nil
	}
	sort.Slice(same, func(i, j int) bool {
		if !same[i].Created.Equal(same[j].Created) {
			return same[i].Created.Before(same[j].Created)
		}
		return same[i].ID < same[j].ID
	})
	keep := same[0]
	if s.cfg.Internal && !keep.Internal {
		return "", fmt.Errorf("network %s is not an internal network, so its containers have a route out around the egress proxy: "+
			"remove it (docker network rm %s, once no container uses it) and hubgate creates it internal, or configure another network name", name, name)
	}
	if s.cfg.Isolate && keep.Options[iccOption] != "false" {
		s.log.Warn("existing network allows traffic between containers; isolation is off", zap.String("network", name))
	}
	for _, dup := range same[1:] {
		if dup.Labels[LabelDeployment] != s.cfg.Prefix {
			continue
		}
		rctx, cancel := s.apiCtx(ctx)
		if err := s.cli.NetworkRemove(rctx, dup.ID); err == nil {
			s.log.Info("removed a duplicate network", zap.String("network", name), zap.String("network_id", dup.ID))
		}
		cancel()
	}
	return keep.ID, nil
}

// networkRef is how containers name the deployment's network: its ID once
// known (a name can be ambiguous while duplicates exist), else its name.
func (s *Spawner) networkRef() string {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	if s.netID != "" {
		return s.netID
	}
	return s.cfg.Network
}

// forgetNetwork makes the next ensureNetwork check the engine again.
func (s *Spawner) forgetNetwork() {
	s.netMu.Lock()
	s.netReady, s.netID = false, ""
	s.netMu.Unlock()
}

// networkLockStale is how old a leftover creation lock must be before it is
// broken (its holder died).
const networkLockStale = 30 * time.Second

// networkLockName is the name of the deployment's network-creation lock,
// which no user's container can have (see spawner.InternalName; user
// "network"'s server "lock" is "<prefix>-network-lock").
func networkLockName(prefix string) string {
	return spawner.InternalName(prefix, "network-lock")
}

// lockNetwork takes the deployment's network-creation lock: a container
// (created, never started) whose fixed name only one process can hold. It
// waits while another process holds it and returns the release func.
func (s *Spawner) lockNetwork(ctx context.Context, image string) (func(), error) {
	name := networkLockName(s.cfg.Prefix)
	for {
		cctx, cancel := s.apiCtx(ctx)
		resp, err := s.cli.ContainerCreate(cctx,
			&container.Config{Image: image, Labels: map[string]string{LabelDeployment: s.cfg.Prefix}},
			&container.HostConfig{NetworkMode: "none"}, nil, nil, name)
		cancel()
		if err == nil {
			return func() {
				rctx, cancel := s.apiCtx(context.WithoutCancel(ctx))
				defer cancel()
				_ = s.cli.ContainerRemove(rctx, resp.ID, container.RemoveOptions{Force: true})
			}, nil
		}
		if !cerrdefs.IsConflict(err) {
			return nil, fmt.Errorf("take the network creation lock: %w", err)
		}
		// Someone holds it: wait, breaking it if its holder died.
		ictx, cancel := s.apiCtx(ctx)
		c, ierr := s.cli.ContainerInspect(ictx, name)
		cancel()
		if ierr == nil {
			if created, perr := time.Parse(time.RFC3339Nano, c.Created); perr == nil && time.Since(created) > s.lockStale {
				rctx, cancel := s.apiCtx(ctx)
				_ = s.cli.ContainerRemove(rctx, c.ID, container.RemoveOptions{Force: true})
				cancel()
			}
		}
		if err := spawner.Sleep(ctx, 50*time.Millisecond, "the network lock"); err != nil {
			return nil, err
		}
	}
}

// NetworkGateway returns the host's address on the deployment's network
// (its IPAM gateway, where the host listens for the containers) and the
// network's subnet. With image non-empty the network is created first if
// it is missing (image, present on the engine, serves the creation lock);
// with image empty a missing network is spawner.ErrNotFound.
func (s *Spawner) NetworkGateway(ctx context.Context, image string) (netip.Addr, netip.Prefix, error) {
	if image != "" {
		if err := s.ensureNetwork(ctx, image); err != nil {
			return netip.Addr{}, netip.Prefix{}, engineErr(err)
		}
	}
	ictx, cancel := s.apiCtx(ctx)
	n, err := s.cli.NetworkInspect(ictx, s.networkRef(), network.InspectOptions{})
	cancel()
	if cerrdefs.IsNotFound(err) {
		s.forgetNetwork()
		return netip.Addr{}, netip.Prefix{}, fmt.Errorf("%w: network %s", spawner.ErrNotFound, s.cfg.Network)
	}
	if err != nil {
		return netip.Addr{}, netip.Prefix{}, engineErr(fmt.Errorf("inspect network %s: %w", s.cfg.Network, err))
	}
	if s.cfg.Internal && !n.Internal {
		return netip.Addr{}, netip.Prefix{}, fmt.Errorf("network %s is not an internal network", s.cfg.Network)
	}
	for _, c := range n.IPAM.Config {
		gw, gerr := netip.ParseAddr(c.Gateway)
		pfx, perr := netip.ParsePrefix(c.Subnet)
		if gerr == nil && perr == nil && gw.Is4() {
			return gw, pfx, nil
		}
	}
	return netip.Addr{}, netip.Prefix{}, fmt.Errorf("network %s has no IPv4 gateway address", s.cfg.Network)
}
