package policies

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// debounce is how long the watcher waits after the last file-system event
// before it reloads, so that an editor's burst of writes and renames causes
// one reload.
const debounce = 150 * time.Millisecond

// ReloadResult is the outcome of one reload of the policy.
type ReloadResult struct {
	// Time is when the reload finished.
	Time time.Time

	// OK says the reload succeeded and its policy is now current.
	OK bool

	// Err is why the reload failed: an Errors listing every problem, or
	// an error reading the files. The previous policy stays current.
	Err error

	// Summary is the new policy's Summary when OK, else empty (the policy
	// in force is still Current).
	Summary string

	// Files are the files that were read, when they could be found.
	Files []string
}

// Watcher holds the current policy and reloads it when its files change.
// A reload builds and validates a whole new Policy and swaps it in only if
// it is valid; otherwise the previous policy stays in force and the
// problems are logged and reported. Its methods are safe for concurrent
// use.
type Watcher struct {
	logger   *zap.Logger
	paths    []string
	onReload func(ReloadResult)

	current atomic.Pointer[Policy]

	reloadMu    sync.Mutex // serializes reloads; guards fingerprint
	fingerprint []byte     // of the files last loaded, whether valid or not

	resultMu sync.Mutex
	last     ReloadResult

	stateMu sync.Mutex
	started bool
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup
}

// NewWatcher loads the policy in paths (see Load) once, synchronously, and
// returns a Watcher holding it, or an error if that first load fails: the
// gateway must not start with a bad policy. It does not watch the files
// until Start is called. onReload, which may be nil, is called after every
// later reload, successful or not, one at a time; it must not call Reload.
// A nil logger logs nothing.
func NewWatcher(logger *zap.Logger, paths []string, onReload func(ReloadResult)) (*Watcher, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	w := &Watcher{
		logger:   logger,
		paths:    append([]string(nil), paths...),
		onReload: onReload,
		done:     make(chan struct{}),
	}
	p, files, fp, err := load(w.paths)
	if err != nil {
		return nil, err
	}
	w.current.Store(p)
	w.fingerprint = fp
	w.last = ReloadResult{Time: time.Now(), OK: true, Summary: p.Summary(), Files: files}
	logger.Info("policy loaded", zap.Strings("files", files), zap.String("summary", p.Summary()))
	return w, nil
}

// Current returns the policy in force. It is lock-free and meant to be
// called on every request; the policy returned must not be modified.
func (w *Watcher) Current() *Policy {
	return w.current.Load()
}

// LastResult returns the outcome of the latest reload (initially, of the
// load done by NewWatcher).
func (w *Watcher) LastResult() ReloadResult {
	w.resultMu.Lock()
	defer w.resultMu.Unlock()
	return w.last
}

// Reload loads the policy now, whether or not its files changed, swaps it
// in if it is valid, logs and reports the outcome, and returns it.
func (w *Watcher) Reload() ReloadResult {
	return w.reload(true)
}

// reload loads the policy; unless force is set, it does nothing when the
// files read the same as last time (file-system events are also caused by
// unrelated files in a watched directory, or by saves that change nothing).
func (w *Watcher) reload(force bool) ReloadResult {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()

	p, files, fp, err := load(w.paths)
	if !force && fp != nil && bytes.Equal(fp, w.fingerprint) {
		return w.LastResult()
	}
	w.fingerprint = fp

	res := ReloadResult{Time: time.Now(), Files: files, Err: err}
	if err != nil {
		w.logger.Error("policy reload failed; keeping the previous policy",
			zap.Strings("files", files), zap.Error(err))
	} else {
		w.current.Store(p)
		res.OK = true
		res.Summary = p.Summary()
		w.logger.Info("policy reloaded", zap.Strings("files", files), zap.String("summary", res.Summary))
	}
	w.resultMu.Lock()
	w.last = res
	w.resultMu.Unlock()
	if w.onReload != nil {
		w.onReload(res)
	}
	return res
}

// Start watches the policy's files and reloads the policy, about 150ms
// after they stop changing, until ctx is done or Close is called. It
// returns once watching has begun.
//
// It watches the directory of each file path rather than the file itself,
// so that saves by rename (most editors) and symlink swaps (Kubernetes
// config maps) are seen, and each folder path itself. When the policy is
// a single file bind-mounted into a container, mount its folder instead:
// a file bind mount keeps pointing at the old file after a save by rename.
func (w *Watcher) Start(ctx context.Context) error {
	w.stateMu.Lock()
	defer w.stateMu.Unlock()
	if w.closed {
		return errors.New("policy watcher: closed")
	}
	if w.started {
		return errors.New("policy watcher: already started")
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("policy watcher: %w", err)
	}
	for _, dir := range w.watchDirs() {
		if err := fsw.Add(dir); err != nil {
			fsw.Close()
			return fmt.Errorf("policy watcher: watching %s: %w", dir, err)
		}
	}
	w.started = true
	w.wg.Add(1)
	go w.run(ctx, fsw)
	return nil
}

// watchDirs returns the directories to watch: each folder path, the
// directory of each file path, and the directory of the file a symlinked
// file path points to.
func (w *Watcher) watchDirs() []string {
	var dirs []string
	add := func(d string) {
		d = filepath.Clean(d)
		for _, x := range dirs {
			if x == d {
				return
			}
		}
		dirs = append(dirs, d)
	}
	for _, p := range w.paths {
		if info, err := os.Stat(p); err == nil && info.IsDir() {
			add(p)
			continue
		}
		add(filepath.Dir(p))
		if real, err := filepath.EvalSymlinks(p); err == nil {
			add(filepath.Dir(real))
		}
	}
	return dirs
}

func (w *Watcher) run(ctx context.Context, fsw *fsnotify.Watcher) {
	defer w.wg.Done()
	defer fsw.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.done:
			return
		case ev, ok := <-fsw.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(debounce)
		case err, ok := <-fsw.Errors:
			if !ok {
				return
			}
			// Events may have been lost (say, an inotify queue overflow):
			// check the files anyway.
			w.logger.Warn("policy watcher error", zap.Error(err))
			timer.Reset(debounce)
		case <-timer.C:
			w.reload(false)
		}
	}
}

// Close stops watching and waits for the watcher to stop. The current
// policy stays readable. Close is idempotent.
func (w *Watcher) Close() error {
	w.stateMu.Lock()
	if !w.closed {
		w.closed = true
		close(w.done)
	}
	w.stateMu.Unlock()
	w.wg.Wait()
	return nil
}
