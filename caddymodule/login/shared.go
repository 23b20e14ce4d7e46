package login

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// What logins on several replicas agree on through Caddy's storage:
//
//   - failed-login counts: each replica keeps its count of the current
//     window per user name and per client IP in memory (checked first,
//     under a lock, before bcrypt) and in one record per replica and key
//     (prefix/loginfail/{user,ip}/<digest>/<replica>), written on each
//     counted attempt only; a login attempt reads the other replicas'
//     records for its user and IP and adds them. So N replicas allow the
//     limit, not N times it (attempts racing on several replicas at the
//     same instant may each pass once). Writes are bounded by the limits
//     themselves: a blocked attempt writes nothing.
//   - used OAuth states: prefix/oauthstate/<digest>, created under the
//     storage lock of its key, so a callback is accepted once on all
//     replicas; records are swept after they expire.
//
// When the storage does not answer, local logins and callbacks are
// refused with a 503 (errStorage), not let through uncounted.

// errStorage marks a login refused because the shared storage failed.
var errStorage = errors.New("shared storage unreachable")

type sharedStore struct {
	st      certmagic.Storage
	prefix  string
	replica string
	// lim holds this replica's counts; write stores them as they are
	// at the write, under mu, so that of concurrent logins from one
	// address the last write stored is the latest count.
	lim *limiter
	mu  sync.Mutex
}

// recordSuffix ends the name of every count record. A file storage
// writes a record through a temporary file in the same folder, which a
// listing also shows: those names do not end with it and are never read
// as another replica's count, nor removed (removing one broke the
// writer's rename).
const recordSuffix = ".json"

// failRecord is one replica's count for one key.
type failRecord struct {
	Count int `json:"count"`
	// Until is Unix nanoseconds: the end of the window.
	Until int64 `json:"until"`
}

// usedState is the record of a used OAuth state.
type usedState struct {
	Expires int64 `json:"exp"`
}

// Share makes the login state keep its counts and used OAuth states in
// storage too, as replica. Applied on every Provision.
func (s *State) Share(storage certmagic.Storage, replica string) {
	s.SetStorage(storage)
	s.shared.Store(&sharedStore{st: storage, prefix: s.prefix, replica: replica, lim: s.limiter})
}

func digest(kind, v string) string {
	sum := sha256.Sum256([]byte("hubgate login key\x00" + kind + "\x00" + v))
	return hex.EncodeToString(sum[:16])
}

func (sh *sharedStore) failDir(kind, v string) string {
	return sh.prefix + "/loginfail/" + kind + "/" + digest(kind, v)
}

// others sums the counts other replicas hold for kind/v in windows not
// yet over, and says when the last of those windows ends.
func (sh *sharedStore) others(ctx context.Context, kind, v string, now time.Time) (int, time.Time, error) {
	dir := sh.failDir(kind, v)
	keys, err := sh.st.List(ctx, dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("%w: list login failures: %v", errStorage, err)
	}
	n, until := 0, time.Time{}
	for _, k := range keys {
		name := path.Base(k)
		if !strings.HasSuffix(name, recordSuffix) || name == sh.replica+recordSuffix {
			continue
		}
		raw, err := sh.st.Load(ctx, k)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("%w: load login failures: %v", errStorage, err)
		}
		var rec failRecord
		if json.Unmarshal(raw, &rec) != nil {
			continue
		}
		if rec.Until < now.UnixNano() {
			_ = sh.st.Delete(ctx, k)
			continue
		}
		n += rec.Count
		if u := time.Unix(0, rec.Until); u.After(until) {
			until = u
		}
	}
	return n, until, nil
}

// write stores this replica's current count for kind/v.
func (sh *sharedStore) write(ctx context.Context, kind, v string) error {
	key := sh.failDir(kind, v) + "/" + sh.replica + recordSuffix
	sh.mu.Lock()
	defer sh.mu.Unlock()
	w := sh.lim.current(kind, v)
	if w.count <= 0 {
		if err := sh.st.Delete(ctx, key); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: delete login failures: %v", errStorage, err)
		}
		return nil
	}
	raw, _ := json.Marshal(failRecord{Count: w.count, Until: w.until.UnixNano()})
	if err := sh.st.Store(ctx, key, raw); err != nil {
		return fmt.Errorf("%w: store login failures: %v", errStorage, err)
	}
	return nil
}

// clear deletes every replica's count for kind/v.
func (sh *sharedStore) clear(ctx context.Context, kind, v string) {
	keys, err := sh.st.List(ctx, sh.failDir(kind, v), false)
	if err != nil {
		return
	}
	for _, k := range keys {
		_ = sh.st.Delete(ctx, k)
	}
}

// loginAttempt is limiter.attempt across replicas: this replica's counts
// plus the others' stored ones. err (errStorage) means the storage could
// not be read or written; the caller refuses the attempt.
func (s *State) loginAttempt(ctx context.Context, user, ip string, now time.Time) (bool, time.Duration, error) {
	sh := s.shared.Load()
	if sh == nil || sh.replica == "" {
		blocked, wait := s.limiter.attempt(user, ip, now)
		return blocked, wait, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ou, uu, err := sh.others(ctx, "user", user, now)
	if err != nil {
		return false, 0, err
	}
	oi, iu, err := sh.others(ctx, "ip", ip, now)
	if err != nil {
		return false, 0, err
	}
	blocked, wait := s.limiter.attemptWith(user, ip, now, [2]int{ou, oi}, [2]time.Time{uu, iu})
	if blocked {
		return true, wait, nil
	}
	for _, k := range [...][2]string{{"user", user}, {"ip", ip}} {
		if err := sh.write(ctx, k[0], k[1]); err != nil {
			// The attempt is refused, so it is not counted: a storage
			// that fails for a while must not leave a lab behind one
			// address locked out once it answers again. (If the user's
			// record was written before the address's failed, it holds
			// this attempt until the user's next one rewrites it.)
			s.limiter.uncount(user, ip)
			return false, 0, err
		}
	}
	return false, 0, nil
}

// loginSucceeded takes back a good login's attempt on every replica: the
// user's failures are cleared, the IP's attempt uncounted.
func (s *State) loginSucceeded(ctx context.Context, user, ip string) {
	s.limiter.succeed(user, ip)
	sh := s.shared.Load()
	if sh == nil || sh.replica == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sh.clear(ctx, "user", user)
	_ = sh.write(ctx, "ip", ip)
}

// consumeStateShared marks an OAuth state used here and in storage; it
// reports false if it was used before on any replica.
func (s *State) consumeStateShared(ctx context.Context, state string) (bool, error) {
	if !s.consumeState(state) {
		return false, nil
	}
	sh := s.shared.Load()
	if sh == nil || sh.replica == "" {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	key := sh.prefix + "/oauthstate/" + digest("state", state)
	if err := sh.st.Lock(ctx, key); err != nil {
		return false, fmt.Errorf("%w: lock used state: %v", errStorage, err)
	}
	defer func() { _ = sh.st.Unlock(context.WithoutCancel(ctx), key) }()
	_, err := sh.st.Load(ctx, key)
	switch {
	case err == nil:
		return false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("%w: load used state: %v", errStorage, err)
	}
	raw, _ := json.Marshal(usedState{Expires: time.Now().Add(oauthStateTTL + time.Minute).Unix()})
	if err := sh.st.Store(ctx, key, raw); err != nil {
		return false, fmt.Errorf("%w: store used state: %v", errStorage, err)
	}
	return true, nil
}

// sweepStates deletes the records of used OAuth states that expired.
func (a *Authenticator) sweepStates(ctx context.Context) {
	sh := a.o.State.shared.Load()
	if sh == nil || sh.replica == "" {
		return
	}
	keys, err := sh.st.List(ctx, sh.prefix+"/oauthstate", false)
	if err != nil {
		return
	}
	now := time.Now().Unix()
	for _, k := range keys {
		if strings.HasSuffix(k, ".lock") {
			continue
		}
		raw, err := sh.st.Load(ctx, k)
		var rec usedState
		if err == nil && (json.Unmarshal(raw, &rec) != nil || rec.Expires < now) {
			_ = sh.st.Delete(ctx, k)
		}
	}
}
