package spawner

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
)

// This file is the contract of helper containers: short-lived containers
// that mount one user's home volume for a job of the gateway's own
// (backups, restores, measuring the home's size), not a user's server.
// Backends that can run them implement HelperRunner; spawner.Spawner does
// not require it.

// Bind mounts a path of the engine's host into a helper container.
type Bind struct {
	// Source is an absolute path on the engine's host.
	Source string
	// Target is where it appears in the container.
	Target string
	// ReadOnly mounts it read-only.
	ReadOnly bool
}

// HelperSpec describes one helper run.
type HelperSpec struct {
	// Kind names the job ([a-z-]+, such as "backup"); it is part of the
	// container's name and labels.
	Kind string
	// User is whose home volume is mounted; empty for a job on the
	// repository alone (no volume is mounted then).
	User string
	// Image is the helper image; it must already be on the engine.
	Image string
	// Cmd is the command, first the program (the image has no shell).
	Cmd []string
	// Env is the container's environment. It is visible to anyone who can
	// inspect the container: never put a secret here, mount a file.
	Env map[string]string
	// HomeMount is the absolute path where the volume is mounted.
	HomeMount string
	// HomeReadOnly mounts the volume read-only (backups and measurements,
	// so a running server keeps running and nothing can be changed).
	HomeReadOnly bool
	// CreateVolume creates the volume when it is missing (a restore after
	// the volume was deleted); otherwise a missing volume is ErrNotFound.
	CreateVolume bool
	// Binds are host paths mounted too (the repository, a password file).
	Binds []Bind
	// Network gives the container the engine's default network (for a
	// repository reached over the network); without it the container has
	// no network at all.
	Network bool
}

// Validate reports whether s is complete and well-formed.
func (s HelperSpec) Validate() error {
	if s.Kind == "" || strings.Trim(s.Kind, "abcdefghijklmnopqrstuvwxyz-") != "" {
		return fmt.Errorf("helper kind %q must match [a-z-]+", s.Kind)
	}
	if s.Image == "" || len(s.Cmd) == 0 {
		return errors.New("helper needs an image and a command")
	}
	if s.User != "" {
		if err := ValidateUser(s.User); err != nil {
			return err
		}
		if !path.IsAbs(s.HomeMount) || path.Clean(s.HomeMount) == "/" {
			return fmt.Errorf("home mount %q must be an absolute path below /", s.HomeMount)
		}
	}
	for _, b := range s.Binds {
		if !path.IsAbs(b.Source) || !path.IsAbs(b.Target) {
			return fmt.Errorf("bind %q -> %q: both paths must be absolute", b.Source, b.Target)
		}
	}
	return nil
}

// HelperResult is how a helper run ended.
type HelperResult struct {
	// ExitCode is the command's exit status.
	ExitCode int
	// Stdout and Stderr are the command's output (each at most
	// MaxLogBytes).
	Stdout, Stderr string
}

// HelperRunner runs helper containers. The container is removed when
// the run ends, whether it succeeded or not (or ctx ended).
type HelperRunner interface {
	RunHelper(ctx context.Context, spec HelperSpec) (HelperResult, error)
	// Homes lists the users that have a home volume in this deployment.
	Homes(ctx context.Context) ([]string, error)
}
