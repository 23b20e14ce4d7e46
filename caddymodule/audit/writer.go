package audit

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = time.Minute
	DefaultLoggerName         = "hubgate.audit"
)

// Options configure a Writer.
type Options struct {
	// Path is the audit log file. Rotated files sit next to it, named
	// after it with the rotation time: audit.log becomes
	// audit-20261201T203000.000Z.log.
	Path string

	// Signer signs the checkpoints; the gateway passes its ES256 assertion
	// key, so that every replica and every restart signs alike. Ed25519
	// and RSA keys work too. Required.
	Signer crypto.Signer

	// KeyID is the signing key's "kid" in the gateway's JWKS, written into
	// each checkpoint so that Verify picks the right key. Optional.
	KeyID string

	// CheckpointEvery is after how many records a checkpoint is written.
	// Default: 1000.
	CheckpointEvery int

	// CheckpointInterval is the longest time records stay unsigned: a
	// checkpoint is written this long after the last one if records came
	// since. Default: 1m.
	CheckpointInterval time.Duration

	// MaxSize rotates the file before a write would make it larger than
	// this many bytes. Zero: never rotate.
	MaxSize int64

	// LoggerName is the "logger" of the records the Writer writes itself
	// (chain start and checkpoints). Default: "hubgate.audit".
	LoggerName string

	// OnError is told about failures of checkpoints written by the timer
	// (those written by Write are returned by Write). Optional.
	OnError func(error)

	now func() time.Time
}

// Writer is a tamper-evident audit log file: an io.Writer of JSON lines
// (zapcore.AddSync it, or use NewCore) that chains and signs them. It is
// safe for concurrent use. Make it with Open.
type Writer struct {
	opts Options

	mu        sync.Mutex
	f         *os.File
	size      int64
	seq       uint64 // seq of the last record written
	last      string // hash of the last line written
	sinceCP   int    // records since the last checkpoint
	lastCP    time.Time
	pending   []byte // an incomplete line given to Write
	closed    bool
	stopTimer chan struct{}
	timerDone chan struct{}
}

// Open opens (or creates) the audit log at opts.Path. If the file, or the
// newest rotated file next to it, already holds records, the chain goes on
// from its last line (a gateway restart); otherwise a new chain starts with
// a "audit chain started" record. A last line that is not a chained record
// is an error: the file was damaged, and continuing would hide it.
func Open(opts Options) (*Writer, error) {
	if opts.Path == "" {
		return nil, errors.New("audit log: no path")
	}
	if opts.Signer == nil {
		return nil, errors.New("audit log: no signer for checkpoints")
	}
	if _, err := algFor(opts.Signer.Public()); err != nil {
		return nil, fmt.Errorf("audit log signer: %w", err)
	}
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = DefaultCheckpointEvery
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = DefaultCheckpointInterval
	}
	if opts.LoggerName == "" {
		opts.LoggerName = DefaultLoggerName
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	w := &Writer{opts: opts}
	if err := w.resume(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log: %w", err)
	}
	w.f, w.size = f, fi.Size()
	w.lastCP = opts.now()
	if w.seq == 0 {
		genesis := make([]byte, 32)
		_, _ = rand.Read(genesis)
		w.last = b64.EncodeToString(genesis)
		if err := w.emit(w.ownRecord("audit chain started", nil)); err != nil {
			f.Close()
			return nil, err
		}
	}
	w.stopTimer, w.timerDone = make(chan struct{}), make(chan struct{})
	go w.timer()
	return w, nil
}

// resume finds the chain's last record: the last line of Path or, if Path
// is empty or missing, of the newest rotated file.
func (w *Writer) resume() error {
	candidates := []string{w.opts.Path}
	if rotated, err := rotatedFiles(w.opts.Path); err == nil && len(rotated) > 0 {
		candidates = append(candidates, rotated[len(rotated)-1])
	}
	for _, file := range candidates {
		line, err := lastLine(file)
		if errors.Is(err, os.ErrNotExist) || (err == nil && line == nil) {
			continue
		}
		if err != nil {
			return fmt.Errorf("audit log: resume the chain: %w", err)
		}
		var r record
		if err := json.Unmarshal(line, &r); err != nil || r.Seq == nil || r.Prev == nil {
			return fmt.Errorf("audit log: resume the chain: the last line of %s is not a chained audit record; move the file aside to start a new chain", file)
		}
		w.seq, w.last = *r.Seq, lineHash(line)
		return nil
	}
	return nil
}

// lastLine returns the last non-empty line of file, without its newline,
// or nil for an empty file.
func lastLine(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	for chunk := int64(64 << 10); ; chunk *= 4 {
		off := max(size-chunk, 0)
		buf := make([]byte, size-off)
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		buf = bytes.TrimRight(buf, "\n")
		if len(buf) == 0 {
			return nil, nil
		}
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			return buf[i+1:], nil
		}
		if off == 0 {
			return buf, nil
		}
	}
}

// rotatedFiles lists the rotated files of path, oldest first.
func rotatedFiles(path string) ([]string, error) {
	ext := filepath.Ext(path)
	base := strings.TrimSuffix(path, ext)
	matches, err := filepath.Glob(base + "-*" + ext)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range matches {
		stamp := strings.TrimSuffix(strings.TrimPrefix(m, base+"-"), ext)
		if _, err := time.Parse(rotationStamp, stamp); err == nil {
			out = append(out, m)
		}
	}
	slices.Sort(out) // the stamp sorts by time
	return out, nil
}

// rotationStamp is the time format in rotated file names.
const rotationStamp = "20060102T150405.000Z"

// Write takes encoded records, one JSON object per line, and writes each
// complete line chained; a trailing incomplete line waits for the rest.
// A line that is not a JSON object is kept as a string in {"raw": ...}.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, errors.New("audit log: closed")
	}
	w.pending = append(w.pending, p...)
	for {
		i := bytes.IndexByte(w.pending, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := w.pending[:i]
		w.pending = w.pending[i+1:]
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		obj := bytes.TrimSpace(line)
		if !isObject(obj) {
			raw, _ := json.Marshal(map[string]string{"raw": string(line)})
			obj = raw
		}
		if err := w.emit(obj); err != nil {
			return len(p), err
		}
		if w.sinceCP >= w.opts.CheckpointEvery {
			if err := w.checkpoint(); err != nil {
				return len(p), err
			}
		}
	}
}

// emit writes one record, chained, rotating first if the file is full.
func (w *Writer) emit(obj []byte) error {
	line := chain(obj, w.seq+1, w.last)
	n := int64(len(line) + 1)
	if w.opts.MaxSize > 0 && w.size > 0 && w.size+n > w.opts.MaxSize {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	if _, err := w.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("audit log: write: %w", err)
	}
	w.size += n
	w.seq++
	w.last = lineHash(line)
	w.sinceCP++
	return nil
}

// rotate moves the current file aside and starts a new one; the chain
// goes on in it.
func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("audit log: rotate: %w", err)
	}
	ext := filepath.Ext(w.opts.Path)
	base := strings.TrimSuffix(w.opts.Path, ext)
	var to string
	for t := w.opts.now().UTC(); ; t = t.Add(time.Millisecond) {
		to = base + "-" + t.Format(rotationStamp) + ext
		if _, err := os.Lstat(to); errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if err := os.Rename(w.opts.Path, to); err != nil {
		return fmt.Errorf("audit log: rotate: %w", err)
	}
	f, err := os.OpenFile(w.opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: rotate: %w", err)
	}
	w.f, w.size = f, 0
	return nil
}

// ownRecord encodes a record of the Writer's own, in zap's JSON shape.
func (w *Writer) ownRecord(msg string, cp *Checkpoint) []byte {
	now := w.opts.now()
	rec := struct {
		Level      string      `json:"level"`
		TS         float64     `json:"ts"`
		Logger     string      `json:"logger"`
		Msg        string      `json:"msg"`
		Checkpoint *Checkpoint `json:"audit_checkpoint,omitempty"`
	}{"info", float64(now.UnixNano()) / 1e9, w.opts.LoggerName, msg, cp}
	b, _ := json.Marshal(rec)
	return b
}

// checkpoint writes a signed checkpoint record.
func (w *Writer) checkpoint() error {
	alg, _ := algFor(w.opts.Signer.Public())
	cp := &Checkpoint{
		Alg:     alg,
		KeyID:   w.opts.KeyID,
		Records: w.seq,
		Time:    w.opts.now().UTC().Format(time.RFC3339Nano),
	}
	sig, err := sign(w.opts.Signer, payload(w.seq+1, w.last, cp.Time))
	if err != nil {
		return fmt.Errorf("audit log: sign checkpoint: %w", err)
	}
	cp.Sig = b64.EncodeToString(sig)
	if err := w.emit(w.ownRecord("audit checkpoint", cp)); err != nil {
		return err
	}
	w.sinceCP = 0
	w.lastCP = w.opts.now()
	return nil
}

// Checkpoint writes a checkpoint now if records came since the last one.
func (w *Writer) Checkpoint() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.sinceCP == 0 {
		return nil
	}
	return w.checkpoint()
}

// timer writes the interval checkpoints.
func (w *Writer) timer() {
	defer close(w.timerDone)
	t := time.NewTicker(max(w.opts.CheckpointInterval/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-w.stopTimer:
			return
		case <-t.C:
		}
		w.mu.Lock()
		var err error
		if !w.closed && w.sinceCP > 0 && w.opts.now().Sub(w.lastCP) >= w.opts.CheckpointInterval {
			err = w.checkpoint()
		}
		w.mu.Unlock()
		if err != nil && w.opts.OnError != nil {
			w.opts.OnError(err)
		}
	}
}

// Sync flushes the file to disk.
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	return w.f.Sync()
}

// Close writes a last checkpoint (if records came since the previous one)
// and closes the file. It is idempotent.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	var errs []error
	if w.sinceCP > 0 {
		errs = append(errs, w.checkpoint())
	}
	w.closed = true
	errs = append(errs, w.f.Sync(), w.f.Close())
	w.mu.Unlock()
	close(w.stopTimer)
	<-w.timerDone
	return errors.Join(errs...)
}
