package hub

import (
	"context"
	"testing"
	"time"
)

func TestStartQueueKeepsOrderAndPositions(t *testing.T) {
	q := &startQueue{limit: 1}
	if err := q.acquire(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	tickets := make(chan *queued, 3)
	order := make(chan int, 3)
	for i := 1; i <= 3; i++ {
		go func() {
			if err := q.acquire(context.Background(), func(w *queued) { tickets <- w }); err != nil {
				t.Error(err)
				return
			}
			order <- i
		}()
		// Arrivals are ordered: wait until this one is queued.
		w := <-tickets
		if got := q.position(w); got != i {
			t.Fatalf("waiter %d is at position %d", i, got)
		}
	}
	if running, waiting := q.stats(); running != 1 || waiting != 3 {
		t.Fatalf("stats = %d running, %d waiting", running, waiting)
	}
	for want := 1; want <= 3; want++ {
		q.release()
		select {
		case got := <-order:
			if got != want {
				t.Fatalf("waiter %d admitted, want %d", got, want)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("waiter %d never admitted", want)
		}
	}
}

func TestStartQueueCancelledWaiterLeavesLine(t *testing.T) {
	q := &startQueue{limit: 1}
	_ = q.acquire(context.Background(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	queuedCh := make(chan *queued, 1)
	errc := make(chan error, 1)
	go func() { errc <- q.acquire(ctx, func(w *queued) { queuedCh <- w }) }()
	w := <-queuedCh
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("cancelled acquire succeeded")
	}
	if q.position(w) != 0 {
		t.Fatal("cancelled waiter still in line")
	}
	q.release()
	if running, waiting := q.stats(); running != 0 || waiting != 0 {
		t.Fatalf("after release: %d running, %d waiting", running, waiting)
	}
}

func TestStartQueueUnlimited(t *testing.T) {
	q := &startQueue{}
	for range 100 {
		if err := q.acquire(context.Background(), func(*queued) { t.Fatal("queued without a limit") }); err != nil {
			t.Fatal(err)
		}
	}
}
