package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// The labels hubgate puts on what it creates (see README, "The container
// contract"), and the one this benchmark puts on what it creates itself.
const (
	labelDeployment = "hubgate.deployment"
	labelUser       = "hubgate.user"
	labelBench      = "hubgate.bench"
)

func newDocker() (*client.Client, error) {
	return client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
}

// appContainer is a running test app container as the benchmark sees it.
type appContainer struct {
	User  string
	ID    string
	IP    string
	Port  string
	Token string
	Pid   int
	// Host is the container's host settings as the engine reports them
	// (capabilities, security options, limits).
	Host *container.HostConfig
}

func (a appContainer) addr() string { return net.JoinHostPort(a.IP, a.Port) }

// findUserContainer returns the running container hubgate started for user
// in deployment name, with its address on the deployment's network and its
// secret (HUBGATE_TOKEN from its environment).
func findUserContainer(ctx context.Context, dk *client.Client, name, user string) (appContainer, error) {
	cs, err := dk.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", labelDeployment+"="+name),
		filters.Arg("label", labelUser+"="+user),
	)})
	if err != nil {
		return appContainer{}, fmt.Errorf("list containers of %s: %w", user, err)
	}
	if len(cs) != 1 {
		return appContainer{}, fmt.Errorf("want one running container of %s, found %d", user, len(cs))
	}
	c, err := dk.ContainerInspect(ctx, cs[0].ID)
	if err != nil {
		return appContainer{}, fmt.Errorf("inspect %s: %w", cs[0].ID, err)
	}
	a := appContainer{ID: c.ID, Port: c.Config.Labels["hubgate.port"], Pid: c.State.Pid, User: user, Host: c.HostConfig}
	if a.Port == "" {
		a.Port = "8888"
	}
	if ep := c.NetworkSettings.Networks[name]; ep != nil {
		a.IP = ep.IPAddress
	}
	for _, kv := range c.Config.Env {
		if v, ok := strings.CutPrefix(kv, "HUBGATE_TOKEN="); ok {
			a.Token = v
		}
	}
	if a.IP == "" || a.Token == "" {
		return a, fmt.Errorf("container %s has no address on network %s or no HUBGATE_TOKEN", c.ID, name)
	}
	return a, nil
}

// removeContainers force-removes the containers matching the label filter.
func removeContainers(ctx context.Context, dk *client.Client, label string) int {
	cs, err := dk.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		log.Printf("list containers %s: %v", label, err)
		return 0
	}
	sem := make(chan struct{}, 8)
	done := make(chan struct{})
	for _, c := range cs {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem; done <- struct{}{} }()
			if err := dk.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
				log.Printf("remove container %s: %v", c.ID[:12], err)
			}
		}()
	}
	for range cs {
		<-done
	}
	return len(cs)
}

// sweep removes everything of deployment name: hubgate's containers,
// volumes and network, and the benchmark's own bare containers and
// volumes. It is the trap of `make bench`. It reports whether all went;
// patient waits for the engine to release the network's endpoints.
func sweep(dk *client.Client, name string, patient bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := removeContainers(ctx, dk, labelDeployment+"="+name)
	n += removeContainers(ctx, dk, labelBench+"="+name)
	v := 0
	for _, label := range []string{labelDeployment + "=" + name, labelBench + "=" + name} {
		vols, err := dk.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", label))})
		if err != nil {
			log.Printf("list volumes %s: %v", label, err)
			continue
		}
		for _, vol := range vols.Volumes {
			if err := dk.VolumeRemove(ctx, vol.Name, true); err != nil {
				log.Printf("remove volume %s: %v", vol.Name, err)
			} else {
				v++
			}
		}
	}
	// The engine releases a removed container's endpoint a little later:
	// "has active endpoints" right after removing many containers.
	nets, ok := 0, true
	for try := 0; ; try++ {
		err := dk.NetworkRemove(ctx, name)
		if err == nil {
			nets++
			break
		}
		msg := strings.ToLower(err.Error())
		if strings.Contains(msg, "not found") {
			break
		}
		if strings.Contains(msg, "active endpoints") && patient && try < 20 {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		log.Printf("remove network %s: %v", name, err)
		ok = false
		break
	}
	log.Printf("removed %d containers, %d volumes, %d networks of %s", n, v, nets, name)
	return ok
}
