package session

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/caddyserver/certmagic"
)

// StoragePrefix is the prefix of every key a deployment keeps in Caddy's
// storage ("hubgate/<name>"), so deployments sharing a storage never see
// each other's keys.
func StoragePrefix(deployment string) string { return "hubgate/" + deployment }

// LoadOrCreate returns the value stored at key, creating it with create
// under the storage lock if it does not exist yet, so every instance
// sharing the storage agrees on one value. check validates a loaded value
// (nil accepts any).
func LoadOrCreate(ctx context.Context, st certmagic.Storage, key string, create func() ([]byte, error), check func([]byte) error) ([]byte, error) {
	load := func() ([]byte, error) {
		raw, err := st.Load(ctx, key)
		if err != nil {
			return nil, err
		}
		if check != nil {
			if err := check(raw); err != nil {
				return nil, fmt.Errorf("%s in storage: %w", key, err)
			}
		}
		return raw, nil
	}
	if raw, err := load(); !errors.Is(err, fs.ErrNotExist) {
		return raw, err
	}
	if err := st.Lock(ctx, key); err != nil {
		return nil, fmt.Errorf("lock %s: %w", key, err)
	}
	defer func() { _ = st.Unlock(context.WithoutCancel(ctx), key) }()
	// Someone may have created it while we waited for the lock.
	if raw, err := load(); !errors.Is(err, fs.ErrNotExist) {
		return raw, err
	}
	raw, err := create()
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", key, err)
	}
	if err := st.Store(ctx, key, raw); err != nil {
		return nil, fmt.Errorf("store %s: %w", key, err)
	}
	return raw, nil
}
