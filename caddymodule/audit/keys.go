package audit

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/go-jose/go-jose/v4"
)

// LoadKeys reads the public keys to verify checkpoints with from a file:
// a JWKS (what the gateway serves at /hub/jwks.json), or PEM holding a
// public key, a certificate or a private key (whose public half is used).
func LoadKeys(file string) ([]Key, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		return parseJWKS(file, t)
	}
	return parsePEM(file, data)
}

func parseJWKS(file string, data []byte) ([]Key, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%s: not a JWKS: %w", file, err)
	}
	var keys []Key
	for _, k := range set.Keys {
		pub := k.Public()
		if !pub.Valid() {
			continue
		}
		keys = append(keys, Key{ID: k.KeyID, Public: pub.Key})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: the JWKS holds no usable key", file)
	}
	return keys, nil
}

func parsePEM(file string, data []byte) ([]Key, error) {
	var keys []Key
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var pub crypto.PublicKey
		switch block.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			pub = k
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			pub = c.PublicKey
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			pub = k.Public()
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("%s: unsupported private key %T", file, k)
			}
			pub = s.Public()
		default:
			continue
		}
		keys = append(keys, Key{Public: pub})
	}
	if len(keys) == 0 {
		return nil, errors.New(file + ": no PEM public key, certificate or private key found")
	}
	return keys, nil
}
