package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/caddyserver/certmagic"
)

// LoadOrCreateKey returns the 32-byte master key stored at name in Caddy's
// storage, creating it under the storage lock if it does not exist yet. All
// gateway instances sharing the storage therefore agree on one key, and a
// restart or config reload keeps every session valid.
func LoadOrCreateKey(ctx context.Context, storage certmagic.Storage, name string) ([]byte, error) {
	if key, err := loadKey(ctx, storage, name); err == nil {
		return key, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := storage.Lock(ctx, name); err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	defer func() { _ = storage.Unlock(context.WithoutCancel(ctx), name) }()
	// Someone may have created it while we waited for the lock.
	if key, err := loadKey(ctx, storage, name); err == nil {
		return key, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	enc := base64.StdEncoding.EncodeToString(key) + "\n"
	if err := storage.Store(ctx, name, []byte(enc)); err != nil {
		return nil, fmt.Errorf("store %s: %w", name, err)
	}
	return key, nil
}

func loadKey(ctx context.Context, storage certmagic.Storage, name string) ([]byte, error) {
	raw, err := storage.Load(ctx, name)
	if err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("key %s in storage is corrupt (want 32 bytes, base64)", name)
	}
	return key, nil
}
