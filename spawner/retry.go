package spawner

import (
	"context"
	"fmt"
	"time"
)

// Backoff is how long a backend waits before its n-th retry of a
// conflicting operation (a racing create, a container or pod still
// settling): 25 ms more each time, at most 400 ms.
func Backoff(n int) time.Duration {
	return min(time.Duration(n)*25*time.Millisecond, 400*time.Millisecond)
}

// Sleep waits d or until ctx is done; what names the thing waited for in
// the error ("the pod to settle").
func Sleep(ctx context.Context, d time.Duration, what string) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for %s: %w", what, ctx.Err())
	}
}

// Log sizes shared by the backends' Logs.
const (
	// DefaultLogLines is how many lines Logs returns when asked for
	// lines <= 0.
	DefaultLogLines = 100
	// MaxLogBytes bounds what Logs reads from the engine.
	MaxLogBytes = 1 << 20
)
