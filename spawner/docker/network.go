package docker

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"
	"go.uber.org/zap"
)

// iccOption is the bridge driver option that allows inter-container traffic.
const iccOption = "com.docker.network.bridge.enable_icc"

// ensureNetwork makes sure the deployment's network exists, creating it if
// needed. Success is remembered; forgetNetwork undoes that when the network
// turns out to be gone.
func (s *Spawner) ensureNetwork(ctx context.Context) error {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	if s.netReady {
		return nil
	}
	name := s.cfg.Network

	ictx, cancel := s.apiCtx(ctx)
	n, err := s.cli.NetworkInspect(ictx, name, network.InspectOptions{})
	cancel()
	if err == nil {
		if s.cfg.Isolate && n.Options[iccOption] != "false" {
			s.log.Warn("existing network allows traffic between containers; isolation is off",
				zap.String("network", name))
		}
		s.netReady = true
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect network %s: %w", name, err)
	}

	opts := network.CreateOptions{
		Driver: "bridge",
		Labels: map[string]string{LabelDeployment: s.cfg.Prefix},
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
			zap.String("network_id", resp.ID), zap.Bool("isolate", s.cfg.Isolate))
	}
	s.netReady = true
	return nil
}

// forgetNetwork makes the next ensureNetwork check the engine again.
func (s *Spawner) forgetNetwork() {
	s.netMu.Lock()
	s.netReady = false
	s.netMu.Unlock()
}
