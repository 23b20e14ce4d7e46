package hub

import (
	"context"
	"sync"
)

// startQueue limits how many servers start at once. Starts beyond the
// limit wait in arrival order, and each can tell its place in line, which
// the progress page shows instead of an error.
type startQueue struct {
	mu      sync.Mutex
	limit   int // 0 means no limit
	running int
	waiting []*queued
}

type queued struct {
	ready chan struct{}
}

// setLimit changes the limit (on config reload) and admits waiters that
// now fit.
func (q *startQueue) setLimit(limit int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.limit = limit
	for len(q.waiting) > 0 && (q.limit <= 0 || q.running < q.limit) {
		w := q.waiting[0]
		q.waiting = q.waiting[1:]
		q.running++
		close(w.ready)
	}
}

// acquire waits for a slot in arrival order. The returned ticket reports
// the place in line until the slot is granted.
func (q *startQueue) acquire(ctx context.Context, onQueued func(*queued)) error {
	q.mu.Lock()
	if len(q.waiting) == 0 && (q.limit <= 0 || q.running < q.limit) {
		q.running++
		q.mu.Unlock()
		return nil
	}
	w := &queued{ready: make(chan struct{})}
	q.waiting = append(q.waiting, w)
	q.mu.Unlock()
	if onQueued != nil {
		onQueued(w)
	}
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		q.mu.Lock()
		defer q.mu.Unlock()
		for i, x := range q.waiting {
			if x == w {
				q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
				return ctx.Err()
			}
		}
		// The slot was granted while we gave up: hand it on.
		q.releaseLocked()
		return ctx.Err()
	}
}

// release frees a slot, handing it to the first waiter.
func (q *startQueue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releaseLocked()
}

func (q *startQueue) releaseLocked() {
	q.running--
	for len(q.waiting) > 0 && (q.limit <= 0 || q.running < q.limit) {
		w := q.waiting[0]
		q.waiting = q.waiting[1:]
		q.running++
		close(w.ready)
	}
}

// position is w's place in line (1 is next), or 0 when it is not waiting.
func (q *startQueue) position(w *queued) int {
	if w == nil {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, x := range q.waiting {
		if x == w {
			return i + 1
		}
	}
	return 0
}

// stats reports starts running and waiting.
func (q *startQueue) stats() (running, waiting int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running, len(q.waiting)
}
