package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/pkg/stdcopy"
	"go.uber.org/zap"

	"github.com/hubgate/hubgate/internal/randid"
	"github.com/hubgate/hubgate/spawner"
)

// LabelHelper marks helper containers (backups, restores, measurements)
// with their kind. They carry the deployment and user labels too, but no
// server label, so List and the exit watcher never take them for servers.
const LabelHelper = "hubgate.helper"

// helperCaps are the capabilities a helper runs with (as root): reading
// and writing every file of a home whoever owns it, and restoring owners
// and modes. Everything else is dropped.
var helperCaps = []string{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID"}

// RunHelper runs a helper container to its end and removes it; see
// spawner.HelperRunner.
func (s *Spawner) RunHelper(ctx context.Context, spec spawner.HelperSpec) (spawner.HelperResult, error) {
	res, err := s.runHelper(ctx, spec)
	if err != nil {
		return res, engineErr(fmt.Errorf("%s helper for %s: %w", spec.Kind, spec.User, err))
	}
	return res, nil
}

func (s *Spawner) runHelper(ctx context.Context, spec spawner.HelperSpec) (spawner.HelperResult, error) {
	var res spawner.HelperResult
	if err := spec.Validate(); err != nil {
		return res, err
	}
	var mounts []mount.Mount
	if spec.User != "" {
		m, err := s.helperVolume(ctx, spec)
		if err != nil {
			return res, err
		}
		mounts = append(mounts, m)
	}
	env := make([]string, 0, len(spec.Env))
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	for _, b := range spec.Binds {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: b.Source, Target: b.Target, ReadOnly: b.ReadOnly})
	}
	return s.runHelperContainer(ctx, spec, env, mounts)
}

// helperVolume finds (or, if asked, creates) the user's volume and
// returns its mount.
func (s *Spawner) helperVolume(ctx context.Context, spec spawner.HelperSpec) (mount.Mount, error) {
	vol := s.volumeName(spec.User)
	m := mount.Mount{Type: mount.TypeVolume, Source: vol, Target: spec.HomeMount, ReadOnly: spec.HomeReadOnly}
	if spec.CreateVolume {
		_, err := s.ensureVolume(ctx, spec.User)
		return m, err
	}
	ictx, cancel := s.apiCtx(ctx)
	_, err := s.cli.VolumeInspect(ictx, vol)
	cancel()
	if cerrdefs.IsNotFound(err) {
		return m, fmt.Errorf("%w: volume %s", spawner.ErrNotFound, vol)
	}
	if err != nil {
		return m, fmt.Errorf("inspect volume %s: %w", vol, err)
	}
	return m, nil
}

// runHelperContainer creates, starts, waits for and removes the helper.
func (s *Spawner) runHelperContainer(ctx context.Context, spec spawner.HelperSpec, env []string, mounts []mount.Mount) (spawner.HelperResult, error) {
	var res spawner.HelperResult
	netMode := container.NetworkMode("none")
	if spec.Network {
		netMode = "bridge"
	}
	pids := int64(256)
	hc := &container.HostConfig{
		NetworkMode:   netMode,
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Mounts:        mounts,
		CapDrop:       []string{"ALL"},
		CapAdd:        helperCaps,
		SecurityOpt:   []string{"no-new-privileges:true"},
		Resources:     container.Resources{PidsLimit: &pids},
	}
	cfg := &container.Config{
		Image:      spec.Image,
		Cmd:        append([]string(nil), spec.Cmd...),
		Entrypoint: []string{},
		Env:        env,
		User:       "0:0",
		Labels: map[string]string{
			LabelDeployment: s.cfg.Prefix,
			LabelUser:       spec.User,
			LabelHelper:     spec.Kind,
			LabelCreated:    time.Now().UTC().Format(time.RFC3339),
		},
	}
	name := fmt.Sprintf("%s-%s-%s-%s", s.cfg.Prefix, spec.Kind, spawner.EscapeName(spec.User), randid.New(6))
	if spec.User == "" {
		name = fmt.Sprintf("%s-%s-%s", s.cfg.Prefix, spec.Kind, randid.New(6))
	}
	cctx, cancel := s.apiCtx(ctx)
	created, err := s.cli.ContainerCreate(cctx, cfg, hc, nil, nil, name)
	cancel()
	if cerrdefs.IsNotFound(err) {
		return res, fmt.Errorf("%w: %s", spawner.ErrImageMissing, spec.Image)
	}
	if err != nil {
		return res, fmt.Errorf("create helper container: %w", err)
	}
	// Removed however the run ends, even when ctx is over.
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.APITimeout)
		defer cancel()
		if err := s.cli.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			s.log.Warn("removing a helper container failed", zap.String("container_id", created.ID), zap.Error(err))
		}
	}()
	// Wait is registered before the start, so a quick exit is not missed.
	waitC, errC := s.cli.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	sctx, cancel := s.apiCtx(ctx)
	err = s.cli.ContainerStart(sctx, created.ID, container.StartOptions{})
	cancel()
	if err != nil {
		return res, fmt.Errorf("start helper container: %w", err)
	}
	select {
	case w := <-waitC:
		res.ExitCode = int(w.StatusCode)
		if w.Error != nil {
			return res, fmt.Errorf("wait for helper container: %s", w.Error.Message)
		}
	case err := <-errC:
		return res, fmt.Errorf("wait for helper container: %w", err)
	case <-ctx.Done():
		return res, ctx.Err()
	}
	lctx, cancel := s.apiCtx(ctx)
	defer cancel()
	rc, err := s.cli.ContainerLogs(lctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return res, fmt.Errorf("helper container's output: %w", err)
	}
	defer rc.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, io.LimitReader(rc, 2*spawner.MaxLogBytes)); err != nil {
		return res, fmt.Errorf("helper container's output: %w", err)
	}
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	return res, nil
}

// Homes lists the users with a home volume in this deployment, from the
// volumes' labels (one engine call).
func (s *Spawner) Homes(ctx context.Context) ([]string, error) {
	lctx, cancel := s.apiCtx(ctx)
	defer cancel()
	vols, err := s.cli.VolumeList(lctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelDeployment+"="+s.cfg.Prefix))})
	if err != nil {
		return nil, engineErr(fmt.Errorf("list volumes of deployment %s: %w", s.cfg.Prefix, err))
	}
	var users []string
	for _, v := range vols.Volumes {
		u := v.Labels[LabelUser]
		if u != "" && v.Name == s.volumeName(u) {
			users = append(users, u)
		}
	}
	sort.Strings(users)
	return users, nil
}

// Interface guard.
var _ spawner.HelperRunner = (*Spawner)(nil)
