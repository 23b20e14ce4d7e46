package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// testImage is built by images/testapp/build.sh in TestMain.
const testImage = "hubgate/testapp:latest"

// netTestImage, the attacker of the hardening tests, is built by
// images/nettest/build.sh in TestMain.
const netTestImage = "hubgate/nettest:latest"

// runID prefixes every object this test run creates, so that runs never
// collide and TestMain can sweep what a failed test left behind.
var runID string

// engine is a raw client the tests use to look behind the Spawner's back.
var engine *client.Client

// TestMain requires a reachable engine (failing loudly, never skipping),
// builds the test image if it is missing or stale, runs the tests and
// sweeps up everything named after runID.
func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	var err error
	engine, err = client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: spawner/docker tests: cannot create a Docker client: %v\n", err)
		return 1
	}
	defer engine.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err = engine.Ping(ctx)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: spawner/docker tests need a running Docker Engine "+
			"(DOCKER_HOST=%q): %v\nThese tests never skip: start Docker or point DOCKER_HOST at it.\n",
			os.Getenv("DOCKER_HOST"), err)
		return 1
	}

	for dir, tag := range map[string]string{"testapp": testImage, "nettest": netTestImage} {
		if err := buildTestImage(dir, tag); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: spawner/docker tests: build %s: %v\n", tag, err)
			return 1
		}
	}

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	runID = "hgtest-" + hex.EncodeToString(b)

	code := m.Run()
	if err := sweep(runID); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: clean up after %s: %v\n", runID, err)
		code = 1
	}
	return code
}

// buildTestImage runs images/DIR/build.sh, which does nothing when the
// image is up to date.
func buildTestImage(dir, tag string) error {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "images", dir, "build.sh")
	cmd := exec.Command("sh", script, tag)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", script, err)
	}
	return nil
}

// sweep force-removes every container, volume and network whose name
// starts with prefix or whose hubgate.deployment label is prefix.
func sweep(prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var errs []string

	seen := map[string]bool{}
	for _, f := range []filters.Args{
		filters.NewArgs(filters.Arg("name", "^/"+prefix)),
		filters.NewArgs(filters.Arg("label", LabelDeployment+"="+prefix)),
	} {
		cs, err := engine.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		if err != nil {
			errs = append(errs, err.Error())
		}
		for _, c := range cs {
			if seen[c.ID] {
				continue
			}
			seen[c.ID] = true
			err := engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
			if err != nil && !strings.Contains(err.Error(), "No such container") {
				errs = append(errs, err.Error())
			}
		}
	}

	vs, err := engine.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("name", prefix))})
	if err != nil {
		errs = append(errs, err.Error())
	}
	for _, v := range vs.Volumes {
		if !strings.HasPrefix(v.Name, prefix) && v.Labels[LabelDeployment] != prefix {
			continue
		}
		if err := engine.VolumeRemove(ctx, v.Name, true); err != nil {
			errs = append(errs, err.Error())
		}
	}

	ns, err := engine.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", prefix))})
	if err != nil {
		errs = append(errs, err.Error())
	}
	for _, n := range ns {
		if !strings.HasPrefix(n.Name, prefix) {
			continue
		}
		if err := engine.NetworkRemove(ctx, n.ID); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// containerStopNow stops a container without a grace period.
func containerStopNow() container.StopOptions {
	zero := 0
	return container.StopOptions{Timeout: &zero}
}
