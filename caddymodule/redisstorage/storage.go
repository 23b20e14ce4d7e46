package redisstorage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Options configure a Storage made by New.
type Options struct {
	// Address names the server in error messages.
	Address string
	// KeyPrefix is put in front of every Redis key. Default: "caddy".
	KeyPrefix string
	// LockTTL is how long a lock lives without renewal. Default: 10s.
	LockTTL time.Duration
	// Timeout bounds each command whose context has no earlier deadline.
	// Default: 5s.
	Timeout time.Duration
	// Logger receives lock warnings. Default: no logging.
	Logger *zap.Logger

	// pollInterval is how often a waiting Lock retries; tests shorten it.
	pollInterval time.Duration
}

// Storage is a certmagic.Storage in Redis. Make it with New.
//
// Redis keys, under the prefix P:
//
//	P:v:<key>    hash {v: value, m: modified (Unix ms)}, one per stored key
//	P:index      sorted set of every stored key (all scores 0), for List,
//	             Delete of a "directory", and Stat/Exists of one
//	P:lock:<name> string holding the owner's random token, with an expiry
//
// "Directories" are implied by keys, as in certmagic's file storage: a key
// "a/b/c" makes "a" and "a/b" exist as non-terminal keys.
type Storage struct {
	client  redis.UniversalClient
	opts    Options
	logger  *zap.Logger
	index   string
	vprefix string
	lprefix string

	mu     sync.Mutex
	held   map[string][]*heldLock // lock name -> locks this instance holds, oldest first
	closed bool
}

// New returns a Storage on client. The Storage owns the client: Close
// closes it.
func New(client redis.UniversalClient, opts Options) *Storage {
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultKeyPrefix
	}
	if opts.LockTTL <= 0 {
		opts.LockTTL = DefaultLockTTL
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.pollInterval <= 0 {
		opts.pollInterval = 250 * time.Millisecond
	}
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Storage{
		client:  client,
		opts:    opts,
		logger:  logger,
		index:   opts.KeyPrefix + ":index",
		vprefix: opts.KeyPrefix + ":v:",
		lprefix: opts.KeyPrefix + ":lock:",
		held:    make(map[string][]*heldLock),
	}
}

// String describes the storage for Caddy's logs, without credentials.
func (s *Storage) String() string {
	return "redis storage at " + s.opts.Address + " (prefix " + s.opts.KeyPrefix + ")"
}

// Close stops renewing the locks this instance holds (they expire after
// LockTTL) and closes the client. It is idempotent.
func (s *Storage) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var all []*heldLock
	for _, hs := range s.held {
		all = append(all, hs...)
	}
	s.held = map[string][]*heldLock{}
	s.mu.Unlock()
	for _, h := range all {
		h.stop()
	}
	if err := s.client.Close(); err != nil {
		return fmt.Errorf("close %s: %w", s, err)
	}
	return nil
}

// Destruct is Close; it lets a caddy.UsagePool hold a Storage.
func (s *Storage) Destruct() error { return s.Close() }

// clean turns a key into its canonical form, as certmagic's file storage
// sees it: no leading or trailing slash, no empty or dot segments. The
// root is "".
func clean(key string) string {
	return path.Clean("/" + key)[1:]
}

// ctx bounds one command by the Timeout unless ctx has an earlier deadline.
func (s *Storage) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.Timeout)
}

// wrap adds the operation and the server to a Redis error.
func (s *Storage) wrap(op, key string, err error) error {
	return fmt.Errorf("%s %q in redis storage at %s: %w", op, key, s.opts.Address, err)
}

// notExist is the error for a missing key; it matches fs.ErrNotExist, which
// certmagic and hubgate test for.
func notExist(op, key string) error {
	return fmt.Errorf("%s %q: %w", op, key, fs.ErrNotExist)
}

// Store puts value at key, creating or overwriting it.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	k := clean(key)
	if k == "" {
		return fmt.Errorf("store: empty key %q", key)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.vprefix+k, "v", value, "m", time.Now().UnixMilli())
		p.ZAdd(ctx, s.index, redis.Z{Member: k})
		return nil
	})
	if err != nil {
		return s.wrap("store", k, err)
	}
	return nil
}

// Load returns the value at key, or an error matching fs.ErrNotExist.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	k := clean(key)
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	v, err := s.client.HGet(ctx, s.vprefix+k, "v").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, notExist("load", k)
	}
	if err != nil {
		return nil, s.wrap("load", k, err)
	}
	return v, nil
}

// deleteScript deletes a key and every key below it (its "directory"),
// atomically. KEYS[1] is the index; ARGV[1] the value key prefix, ARGV[2]
// the key ("" for everything), ARGV[3] and ARGV[4] the lexical range of the
// keys below it.
var deleteScript = redis.NewScript(`
local index, vprefix, key = KEYS[1], ARGV[1], ARGV[2]
local n = 0
if key ~= "" then
  n = n + redis.call('DEL', vprefix .. key)
  redis.call('ZREM', index, key)
end
local below = redis.call('ZRANGEBYLEX', index, ARGV[3], ARGV[4])
for i = 1, #below, 500 do
  local batch, keys = {}, {}
  for j = i, math.min(i + 499, #below) do
    batch[#batch + 1] = below[j]
    keys[#keys + 1] = vprefix .. below[j]
  end
  n = n + redis.call('DEL', unpack(keys))
  redis.call('ZREM', index, unpack(batch))
end
return n
`)

// below returns the ZRANGEBYLEX bounds of the keys strictly below k.
func below(k string) (minLex, maxLex string) {
	if k == "" {
		return "-", "+"
	}
	// '0' is the byte after '/'.
	return "[" + k + "/", "(" + k + "0"
}

// Delete deletes key and, if it is a "directory", every key below it. A
// missing key is not an error.
func (s *Storage) Delete(ctx context.Context, key string) error {
	k := clean(key)
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	lo, hi := below(k)
	if err := deleteScript.Run(ctx, s.client, []string{s.index}, s.vprefix, k, lo, hi).Err(); err != nil {
		return s.wrap("delete", k, err)
	}
	return nil
}

// Exists reports whether key exists, as a stored key or as a "directory"
// of stored keys. It is false on errors.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// Stat describes key: a stored key is terminal, with its size and time of
// last store; a "directory" is not terminal. A missing key is an error
// matching fs.ErrNotExist.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	k := clean(key)
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var (
		mod   *redis.StringCmd
		size  *redis.IntCmd
		child *redis.StringSliceCmd
	)
	lo, hi := below(k)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		mod = p.HGet(ctx, s.vprefix+k, "m")
		size = p.HStrLen(ctx, s.vprefix+k, "v")
		child = p.ZRangeByLex(ctx, s.index, &redis.ZRangeBy{Min: lo, Max: hi, Count: 1})
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return certmagic.KeyInfo{}, s.wrap("stat", k, err)
	}
	if ms, err := mod.Int64(); err == nil {
		return certmagic.KeyInfo{
			Key:        key,
			Modified:   time.UnixMilli(ms),
			Size:       size.Val(),
			IsTerminal: true,
		}, nil
	}
	if len(child.Val()) > 0 || k == "" {
		return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
	}
	return certmagic.KeyInfo{}, notExist("stat", k)
}

// List returns the keys below prefix, as certmagic's file storage does:
// with recursive, every key and "directory" below prefix; without, only
// the names directly below it (keys and "directories"). Keys are given as
// path.Join(prefix, relative name), in the order of a depth-first walk
// with names sorted. A prefix that does not exist is an error matching
// fs.ErrNotExist; a prefix that is a stored key lists nothing.
func (s *Storage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	k := clean(prefix)
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	lo, hi := below(k)
	var (
		members *redis.StringSliceCmd
		self    *redis.IntCmd
	)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		members = p.ZRangeByLex(ctx, s.index, &redis.ZRangeBy{Min: lo, Max: hi})
		self = p.Exists(ctx, s.vprefix+k)
		return nil
	})
	if err != nil {
		return nil, s.wrap("list", k, err)
	}
	if len(members.Val()) == 0 {
		if self.Val() > 0 || k == "" {
			return nil, nil
		}
		return nil, notExist("list", k)
	}
	seen := make(map[string]struct{})
	var rels []string
	add := func(rel string) {
		if _, ok := seen[rel]; !ok {
			seen[rel] = struct{}{}
			rels = append(rels, rel)
		}
	}
	for _, m := range members.Val() {
		rel := m
		if k != "" {
			rel = m[len(k)+1:]
		}
		if !recursive {
			first, _, _ := strings.Cut(rel, "/")
			add(first)
			continue
		}
		for i, c := range rel {
			if c == '/' {
				add(rel[:i])
			}
		}
		add(rel)
	}
	slices.SortFunc(rels, walkOrder)
	keys := make([]string, len(rels))
	for i, rel := range rels {
		keys[i] = path.Join(prefix, rel)
	}
	return keys, nil
}

// walkOrder orders relative names as a depth-first walk with sorted names
// visits them: segment by segment.
func walkOrder(a, b string) int {
	for {
		as, arest, amore := strings.Cut(a, "/")
		bs, brest, bmore := strings.Cut(b, "/")
		if c := strings.Compare(as, bs); c != 0 {
			return c
		}
		switch {
		case !amore && !bmore:
			return 0
		case !amore:
			return -1
		case !bmore:
			return 1
		}
		a, b = arest, brest
	}
}

// formatTTL is a duration in whole milliseconds, at least 1, for PX.
func formatTTL(d time.Duration) string {
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}

// Interface guards.
var (
	_ certmagic.Storage          = (*Storage)(nil)
	_ certmagic.TryLocker        = (*Storage)(nil)
	_ certmagic.LockLeaseRenewer = (*Storage)(nil)
)
