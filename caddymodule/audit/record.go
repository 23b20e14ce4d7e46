// Package audit makes hubgate's audit log tamper-evident, and checks it.
//
// A Writer sits between the audit logger's encoder and its file. To every
// record (one JSON object per line, as zap writes them) it appends two
// fields: "seq", the record's number in its chain (1 for the first), and
// "prev", the base64url SHA-256 of the previous line's bytes (for the first
// record, a random genesis value). Every CheckpointEvery records, every
// CheckpointInterval, and on Close it adds a checkpoint record signed with a
// crypto.Signer (the gateway's ES256 assertion key), which commits to the
// whole chain before it. Rotation and restarts continue the chain: the
// first record of a new file names the hash of the last record of the
// previous one.
//
// Verify reads files back and names the first removed, reordered or edited
// record (file:line), or reports "ok: N records, M checkpoints". Records
// after the last checkpoint are chained but not yet signed: someone able to
// write the file could cut them off, or rewrite them together with the
// chain behind them, without Verify noticing; checkpoints bound that window.
//
// Each writer (each gateway replica) must write its own file, with its own
// chain.
package audit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Field names the Writer adds to records. Audit records must not use them
// for anything else.
const (
	FieldSeq        = "seq"
	FieldPrev       = "prev"
	FieldCheckpoint = "audit_checkpoint"
)

// b64 is the encoding of hashes and signatures in records.
var b64 = base64.RawURLEncoding

// lineHash is the hash of one line (without its newline), as the next
// record's "prev" names it.
func lineHash(line []byte) string {
	sum := sha256.Sum256(line)
	return b64.EncodeToString(sum[:])
}

// chain appends the chain fields to a JSON object (one line, without its
// newline).
func chain(obj []byte, seq uint64, prev string) []byte {
	obj = bytes.TrimRight(obj, " \t\r")
	body := obj[:len(obj)-1] // without the closing brace
	out := make([]byte, 0, len(obj)+len(prev)+40)
	out = append(out, body...)
	if len(bytes.TrimSpace(body)) > 1 { // not "{"
		out = append(out, ',')
	}
	out = append(out, `"`+FieldSeq+`":`...)
	out = strconv.AppendUint(out, seq, 10)
	out = append(out, `,"`+FieldPrev+`":"`...)
	out = append(out, prev...)
	out = append(out, `"}`...)
	return out
}

// isObject reports whether line looks like one JSON object.
func isObject(line []byte) bool {
	t := bytes.TrimSpace(line)
	return len(t) >= 2 && t[0] == '{' && t[len(t)-1] == '}' && json.Valid(t)
}

// Checkpoint is the signed part of a checkpoint record.
type Checkpoint struct {
	// Alg is the signature algorithm: "ES256", "EdDSA" or "RS256".
	Alg string `json:"alg"`
	// KeyID names the signing key, as the JWKS does ("kid").
	KeyID string `json:"kid,omitempty"`
	// Records is how many records the chain had before this checkpoint.
	Records uint64 `json:"records"`
	// Time is when the checkpoint was made, RFC 3339 with nanoseconds.
	Time string `json:"time"`
	// Sig is the base64url signature of the checkpoint's payload.
	Sig string `json:"sig"`
}

// record is what Verify reads of a line.
type record struct {
	Seq        *uint64     `json:"seq"`
	Prev       *string     `json:"prev"`
	Checkpoint *Checkpoint `json:"audit_checkpoint"`
}

// payload is what a checkpoint signs: the checkpoint record's seq, the hash
// of the line before it (which commits to the whole chain before it), and
// its time.
func payload(seq uint64, prev, time string) []byte {
	return fmt.Appendf(nil, "hubgate-audit-checkpoint/v1\n%d\n%s\n%s", seq, prev, time)
}

// algFor returns the algorithm name of a public key.
func algFor(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve.Params().Name != "P-256" {
			return "", fmt.Errorf("ECDSA key on %s: only P-256 (ES256) is supported", k.Curve.Params().Name)
		}
		return "ES256", nil
	case ed25519.PublicKey:
		return "EdDSA", nil
	case *rsa.PublicKey:
		return "RS256", nil
	}
	return "", fmt.Errorf("unsupported key type %T", pub)
}

// sign signs a checkpoint payload.
func sign(s crypto.Signer, msg []byte) ([]byte, error) {
	if _, ok := s.Public().(ed25519.PublicKey); ok {
		return s.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	digest := sha256.Sum256(msg)
	return s.Sign(rand.Reader, digest[:], crypto.SHA256)
}

// errBadSignature is a checkpoint signature that does not verify.
var errBadSignature = errors.New("signature does not verify")

// verifySig checks a checkpoint signature.
func verifySig(pub crypto.PublicKey, alg string, msg, sig []byte) error {
	want, err := algFor(pub)
	if err != nil {
		return err
	}
	if alg != want {
		return fmt.Errorf("checkpoint algorithm %s, but the key is for %s", alg, want)
	}
	digest := sha256.Sum256(msg)
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, digest[:], sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, msg, sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil
	}
	if !ok {
		return errBadSignature
	}
	return nil
}
