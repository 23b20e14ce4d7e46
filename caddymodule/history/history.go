// Package history keeps, for each user, the latest audit records that
// concern them, so that a user can see their own access history (logins,
// failed logins at their name, starts, stops, denials, and whatever other
// records name them) and an admin anyone's.
//
// An Index is an io.Writer of audit records, one JSON object per line as
// zap's JSON encoder writes them: the gateway tees its "hubgate.audit"
// logger into it. A record concerns the users named in its "user" and
// "owner" fields and in its "subjects" field (a list of names, for records
// about several people, such as a share); new kinds of audit record appear
// in the history without a change here as long as they name their subject
// that way. A policy reload's "access_changes" lines ("bob: - access")
// concern the user each line names, and each user sees only their own
// lines.
//
// The index is bounded: at most PerUser records per user (the newest),
// at most MaxBytes of records in all (the users whose latest record is
// oldest lose their records first). It lives in memory; Seed fills it
// from the tail of the tamper-evident audit file at start-up, so a
// restarted gateway shows what it showed before. It knows nothing of
// HTTP, sessions or policies.
package history

import (
	"bytes"
	"container/list"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultPerUser  = 500
	DefaultMaxBytes = 64 << 20
	// maxLine is the longest record kept; longer ones are cut (their
	// fields' long strings shortened) before they are indexed.
	maxLine = 8 << 10
	// maxString is the longest string field value kept in a record.
	maxString = 1 << 10
)

// Options bound an Index.
type Options struct {
	// PerUser is how many records are kept per user (the newest).
	// Default: 500.
	PerUser int
	// MaxBytes bounds the records kept in all (their JSON size). Default:
	// 64 MiB.
	MaxBytes int64
}

// Record is one audit record as the history shows it.
type Record struct {
	// ID orders the records of this index (larger is newer); it is the
	// cursor of Page. It is not kept across restarts.
	ID uint64 `json:"id"`
	// Time is the record's time.
	Time time.Time `json:"time"`
	// Level is "info", "warn" or "error".
	Level string `json:"level"`
	// Msg is what happened ("login", "spawn", "stop", ...).
	Msg string `json:"msg"`
	// Fields are the record's other fields (user, server, by, reason...),
	// without the chain's seq and prev.
	Fields map[string]any `json:"fields"`
}

// Index is the per-user history. It is safe for concurrent use.
type Index struct {
	opts Options

	mu      sync.Mutex
	users   map[string]*list.Element // of *userHistory
	lru     *list.List               // least recently added-to user first
	bytes   int64
	nextID  uint64
	pending []byte
}

type userHistory struct {
	name string
	recs []*stored // oldest first
}

type stored struct {
	rec  Record
	size int64
}

// New makes an empty index.
func New(opts Options) *Index {
	if opts.PerUser <= 0 {
		opts.PerUser = DefaultPerUser
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	return &Index{opts: opts, users: map[string]*list.Element{}, lru: list.New(), nextID: seedIDs}
}

// seedIDs is where the IDs of records written live begin; records read
// back by Seed, which are older, take the IDs below it, so a Seed that
// finishes after live records arrived still orders every user's records
// by time.
const seedIDs = 1 << 40

// Write takes encoded records, one JSON object per line; a trailing
// incomplete line waits for the rest. Lines that are not JSON objects,
// and records that name no user, are ignored. It never fails.
func (x *Index) Write(p []byte) (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.pending = append(x.pending, p...)
	for {
		i := bytes.IndexByte(x.pending, '\n')
		if i < 0 {
			if len(x.pending) > 1<<20 { // no newline in a MiB: not records
				x.pending = nil
			}
			return len(p), nil
		}
		x.addLocked(x.pending[:i])
		x.pending = x.pending[i+1:]
	}
}

// Sync implements zapcore.WriteSyncer; there is nothing to flush.
func (x *Index) Sync() error { return nil }

// Add indexes one record (a JSON object, without its newline).
func (x *Index) Add(line []byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.addLocked(line)
}

// Fields of a zap record that are not the record's own fields.
var envelope = map[string]bool{"ts": true, "level": true, "logger": true, "msg": true, "seq": true, "prev": true, "caller": true, "stacktrace": true}

func (x *Index) addLocked(line []byte) {
	rec, subjects, size, ok := parse(line)
	if !ok {
		return
	}
	for _, u := range subjects {
		x.nextID++
		x.appendLocked(u, &stored{rec: forUser(rec, u, x.nextID), size: size})
	}
	x.evictLocked()
}

// forUser is rec as user's history shows it, with its ID.
func forUser(rec Record, user string, id uint64) Record {
	rec.ID = id
	if changes, ok := rec.Fields["access_changes"].([]any); ok {
		rec.Fields = ownChanges(rec.Fields, changes, user)
	}
	return rec
}

// parse decodes one record and finds whom it concerns.
func parse(line []byte) (rec Record, subjects []string, size int64, ok bool) {
	line = bytes.TrimSpace(line)
	if len(line) < 2 || line[0] != '{' {
		return rec, nil, 0, false
	}
	var raw map[string]any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return rec, nil, 0, false
	}
	subjects = Subjects(raw)
	if len(subjects) == 0 {
		return rec, nil, 0, false
	}
	rec = Record{Fields: map[string]any{}}
	rec.Msg, _ = raw["msg"].(string)
	rec.Level, _ = raw["level"].(string)
	if ts, ok := raw["ts"].(json.Number); ok {
		if f, err := ts.Float64(); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			sec, frac := math.Modf(f)
			rec.Time = time.Unix(int64(sec), int64(frac*1e9)).UTC()
		}
	}
	for k, v := range raw {
		if !envelope[k] {
			rec.Fields[k] = shorten(v)
		}
	}
	return rec, subjects, min(int64(len(line)), maxLine), true
}

// Subjects are the users a record (decoded JSON) concerns: its "user" and
// "owner", the names in "subjects", and the users named by its
// "access_changes" lines. Names are as the record gives them (the gateway
// writes canonical names).
func Subjects(raw map[string]any) []string {
	seen := map[string]bool{}
	var out []string
	add := func(v any) {
		if s, ok := v.(string); ok && s != "" && !seen[s] && len(s) <= 256 {
			seen[s] = true
			out = append(out, s)
		}
	}
	add(raw["user"])
	add(raw["owner"])
	if list, ok := raw["subjects"].([]any); ok {
		for _, v := range list {
			add(v)
		}
	}
	if changes, ok := raw["access_changes"].([]any); ok {
		for _, c := range changes {
			if s, ok := c.(string); ok {
				if u, _, ok := strings.Cut(s, ": "); ok {
					add(u)
				}
			}
		}
	}
	return out
}

// ownChanges is a reload record's fields with only user's lines of its
// access changes: nobody sees what others gained or lost.
func ownChanges(fields map[string]any, changes []any, user string) map[string]any {
	out := make(map[string]any, len(fields))
	for k, v := range fields {
		out[k] = v
	}
	var mine []any
	for _, c := range changes {
		if s, ok := c.(string); ok && strings.HasPrefix(s, user+": ") {
			mine = append(mine, s)
		}
	}
	if mine == nil {
		delete(out, "access_changes")
	} else {
		out["access_changes"] = mine
	}
	delete(out, "files") // the policy's file names are the admins' business
	return out
}

// shorten cuts long strings (a container's output, say) in a field value.
func shorten(v any) any {
	switch t := v.(type) {
	case string:
		if len(t) > maxString {
			return t[:maxString] + "…"
		}
	case []any:
		if len(t) > 50 {
			t = append(t[:50:50], "…")
		}
		for i := range t {
			t[i] = shorten(t[i])
		}
		return t
	case map[string]any:
		for k := range t {
			t[k] = shorten(t[k])
		}
	}
	return v
}

func (x *Index) appendLocked(user string, s *stored) {
	el, ok := x.users[user]
	if !ok {
		el = x.lru.PushBack(&userHistory{name: user})
		x.users[user] = el
	} else {
		x.lru.MoveToBack(el)
	}
	uh := el.Value.(*userHistory)
	uh.recs = append(uh.recs, s)
	x.bytes += s.size
	if over := len(uh.recs) - x.opts.PerUser; over > 0 {
		for _, old := range uh.recs[:over] {
			x.bytes -= old.size
		}
		uh.recs = append(uh.recs[:0:0], uh.recs[over:]...)
	}
}

// evictLocked drops the oldest records of the least recently active users
// until the index fits MaxBytes.
func (x *Index) evictLocked() {
	for x.bytes > x.opts.MaxBytes && x.lru.Len() > 0 {
		el := x.lru.Front()
		uh := el.Value.(*userHistory)
		if len(uh.recs) > 0 {
			x.bytes -= uh.recs[0].size
			uh.recs[0] = nil
			uh.recs = uh.recs[1:]
		}
		if len(uh.recs) == 0 {
			x.lru.Remove(el)
			delete(x.users, uh.name)
		}
	}
}

// Page returns user's records newest first: at most n of those with an
// ID below before (0: from the newest), and whether older ones remain.
func (x *Index) Page(user string, before uint64, n int) (recs []Record, more bool) {
	if n <= 0 {
		n = 50
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	el, ok := x.users[user]
	if !ok {
		return nil, false
	}
	all := el.Value.(*userHistory).recs
	// IDs grow with the slice: find the first record at or past before.
	end := len(all)
	if before > 0 {
		end = sort.Search(len(all), func(i int) bool { return all[i].rec.ID >= before })
	}
	for i := end - 1; i >= 0 && len(recs) < n; i-- {
		recs = append(recs, all[i].rec)
	}
	return recs, end-len(recs) > 0
}

// Len is how many records the index holds in all.
func (x *Index) Len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for _, el := range x.users {
		n += len(el.Value.(*userHistory).recs)
	}
	return n
}

// Seed reads up to budget bytes from the end of the audit files (given
// oldest first: rotated files, then the current one) and indexes their
// records as older than any written to the index so far, so it may run
// while live records arrive (the gateway runs it in the background at
// start-up). Missing files are skipped. It returns how many bytes it
// read. Call it once.
func (x *Index) Seed(budget int64, files ...string) (int64, error) {
	var chunks [][]byte // newest first
	var read int64
	for i := len(files) - 1; i >= 0 && read < budget; i-- {
		b, err := tail(files[i], budget-read)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return read, fmt.Errorf("read audit history from %s: %w", files[i], err)
		}
		read += int64(len(b))
		chunks = append(chunks, b)
	}
	// Parse without the lock, oldest first, each user's records apart.
	byUser := map[string][]*stored{}
	var order []string
	id := uint64(0)
	for i := len(chunks) - 1; i >= 0; i-- {
		for _, line := range bytes.Split(chunks[i], []byte{'\n'}) {
			rec, subjects, size, ok := parse(line)
			if !ok {
				continue
			}
			for _, u := range subjects {
				if id++; id >= seedIDs {
					break
				}
				if _, seen := byUser[u]; !seen {
					order = append(order, u)
				}
				byUser[u] = append(byUser[u], &stored{rec: forUser(rec, u, id), size: size})
				if n := len(byUser[u]); n > 2*x.opts.PerUser { // keep the newest only
					byUser[u] = append(byUser[u][:0:0], byUser[u][n-x.opts.PerUser:]...)
				}
			}
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	// Users read back are less recently active than live ones: in the
	// LRU before them, the most recent of them last.
	mark := x.lru.Front()
	for _, u := range order {
		old := byUser[u]
		if len(old) > x.opts.PerUser {
			old = old[len(old)-x.opts.PerUser:]
		}
		el, ok := x.users[u]
		if !ok {
			if mark != nil {
				el = x.lru.InsertBefore(&userHistory{name: u}, mark)
			} else {
				el = x.lru.PushBack(&userHistory{name: u})
			}
			x.users[u] = el
		}
		uh := el.Value.(*userHistory)
		for _, r := range old {
			x.bytes += r.size
		}
		uh.recs = append(append([]*stored{}, old...), uh.recs...)
		if over := len(uh.recs) - x.opts.PerUser; over > 0 {
			for _, r := range uh.recs[:over] {
				x.bytes -= r.size
			}
			uh.recs = append(uh.recs[:0:0], uh.recs[over:]...)
		}
	}
	x.evictLocked()
	return read, nil
}

// tail returns at most n bytes from the end of file, starting at a line.
func tail(file string, n int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if off > 0 { // the first line is cut: drop it
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		} else {
			buf = nil
		}
	}
	return buf, nil
}
