package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/caddyserver/certmagic"
)

// LoadOrCreateKey returns the 32-byte master key stored at name in Caddy's
// storage, creating it under the storage lock if it does not exist yet. All
// gateway instances sharing the storage therefore agree on one key, and a
// restart or config reload keeps every session valid.
func LoadOrCreateKey(ctx context.Context, storage certmagic.Storage, name string) ([]byte, error) {
	raw, err := LoadOrCreate(ctx, storage, name, func() ([]byte, error) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		return []byte(base64.StdEncoding.EncodeToString(key) + "\n"), nil
	}, func(raw []byte) error {
		_, err := decodeKey(raw)
		return err
	})
	if err != nil {
		return nil, err
	}
	return decodeKey(raw)
}

func decodeKey(raw []byte) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) != 32 {
		return nil, errors.New("corrupt key (want 32 bytes, base64)")
	}
	return key, nil
}
