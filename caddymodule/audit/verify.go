package audit

import (
	"bufio"
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Key is a public key Verify may check checkpoints with.
type Key struct {
	// ID is the key's "kid"; empty matches checkpoints with any kid.
	ID string
	// Public is the public key.
	Public crypto.PublicKey
}

// Report is what Verify found.
type Report struct {
	// Files are the files read, in order.
	Files []string
	// Records is how many records were read (checkpoints included).
	Records int
	// Checkpoints is how many checkpoints verified.
	Checkpoints int
	// Chains is how many chains the files hold (one per writer, when all
	// of a writer's files are given).
	Chains int
	// Unsigned is how many records come after the last checkpoint of
	// their chain: chained, but not yet covered by a signature.
	Unsigned int
	// Problem is the first problem found, or nil.
	Problem *Problem
}

// String is the one-line result, such as "ok: 1200 records, 2
// checkpoints" or the problem.
func (r Report) String() string {
	if r.Problem != nil {
		return r.Problem.Error()
	}
	s := fmt.Sprintf("ok: %d records, %d checkpoints", r.Records, r.Checkpoints)
	if r.Chains > 1 {
		s += fmt.Sprintf(", %d chains", r.Chains)
	}
	if r.Unsigned > 0 {
		s += fmt.Sprintf(" (the last %d records are chained but not yet signed)", r.Unsigned)
	}
	return s
}

// Problem kinds.
const (
	KindEdited      = "edited"
	KindRemoved     = "removed"
	KindReordered   = "reordered"
	KindNotARecord  = "not an audit record"
	KindBadSig      = "bad checkpoint"
	KindMissingHead = "start missing"
)

// Problem is a record that shows the log was tampered with.
type Problem struct {
	// File and Line locate the record (Line counts from 1).
	File string
	Line int
	// Kind is one of the Kind* constants.
	Kind string
	// Detail says what was found.
	Detail string
}

// Error is "file:line: kind: detail".
func (p *Problem) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Kind, p.Detail)
}

// entry is one line read back.
type entry struct {
	file string
	line int
	hash string
	rec  record
	ok   bool // a chained record
}

// Verify checks the audit log files, given in the order they were written
// (rotated files oldest first, then the current one; files of several
// writers may follow each other), against pub. It returns the report and,
// if the log was tampered with, the report's Problem as the error. Errors
// reading the files are returned as such.
func Verify(pub crypto.PublicKey, files ...string) (Report, error) {
	return VerifyKeys([]Key{{Public: pub}}, files...)
}

// VerifyKeys is Verify with several keys (a JWKS); a checkpoint's kid
// picks its key.
func VerifyKeys(keys []Key, files ...string) (Report, error) {
	rep := Report{Files: files}
	if len(files) == 0 {
		return rep, errors.New("no audit log file given")
	}
	var entries []entry
	for _, file := range files {
		es, err := readEntries(file)
		if err != nil {
			return rep, err
		}
		entries = append(entries, es...)
	}
	rep.Records = len(entries)
	fail := func(e entry, kind, format string, args ...any) (Report, error) {
		rep.Problem = &Problem{File: e.file, Line: e.line, Kind: kind, Detail: fmt.Sprintf(format, args...)}
		return rep, rep.Problem
	}
	unsigned := 0 // records after the last checkpoint of the current chain
	for i, e := range entries {
		if !e.ok {
			return fail(e, KindNotARecord, "not a JSON record with %q and %q (inserted or edited)", FieldSeq, FieldPrev)
		}
		seq, prev := *e.rec.Seq, *e.rec.Prev
		newFile := i == 0 || entries[i-1].file != e.file
		switch {
		case seq == 1 && newFile:
			// A chain starts: its first file, from a genesis value.
			rep.Chains++
			rep.Unsigned += unsigned
			unsigned = 0
		case i == 0:
			what := "record 1 is"
			if seq > 2 {
				what = fmt.Sprintf("records 1 to %d are", seq-1)
			}
			return fail(e, KindMissingHead, "the chain starts at record %d: %s not in the files given (give the earlier rotated files first, or they were removed)", seq, what)
		default:
			p := entries[i-1]
			want := *p.rec.Seq + 1
			switch {
			case seq > want && i+1 < len(entries) && entries[i+1].ok && *entries[i+1].rec.Seq == want:
				return fail(e, KindReordered, "record %d where record %d was expected (swapped with the next line)", seq, want)
			case seq > want:
				what := fmt.Sprintf("record %d is", want)
				if seq-want > 1 {
					what = fmt.Sprintf("records %d to %d are", want, seq-1)
				}
				return fail(e, KindRemoved, "%s missing before this line (after %s)", what, where(p, e.file))
			case seq < want:
				return fail(e, KindReordered, "record %d after record %d (moved or copied here)", seq, want-1)
			case prev != p.hash:
				// The line before was edited, unless this line's own
				// prev was: then the next line does not match it either.
				if i+1 < len(entries) && entries[i+1].ok && *entries[i+1].rec.Prev != e.hash && entries[i+1].file == e.file {
					return fail(e, KindEdited, "record %d does not hash to what the next record holds, and its %q does not match the record before", seq, FieldPrev)
				}
				return fail(p, KindEdited, "record %d does not hash to the %q of the record after it (%s)", *p.rec.Seq, FieldPrev, where(e, p.file))
			}
		}
		if cp := e.rec.Checkpoint; cp != nil {
			if err := checkCheckpoint(keys, cp, seq, prev); err != nil {
				return fail(e, KindBadSig, "checkpoint at record %d: %v: the records before it were rewritten, or this is not the gateway's key", seq, err)
			}
			rep.Checkpoints++
			unsigned = 0
		} else {
			unsigned++
		}
	}
	// An edit of a chain's last unsigned records cannot show: nothing
	// after them holds their hash. The report counts them.
	rep.Unsigned += unsigned
	return rep, nil
}

// where locates e for a message about a record in file.
func where(e entry, file string) string {
	if e.file == file {
		return fmt.Sprintf("line %d", e.line)
	}
	return fmt.Sprintf("%s:%d", e.file, e.line)
}

// checkCheckpoint verifies one checkpoint with the key its kid names.
func checkCheckpoint(keys []Key, cp *Checkpoint, seq uint64, prev string) error {
	if cp.Records != seq-1 {
		return fmt.Errorf("it counts %d records before it, the chain has %d", cp.Records, seq-1)
	}
	sig, err := b64.DecodeString(cp.Sig)
	if err != nil {
		return fmt.Errorf("signature is not base64url: %w", err)
	}
	msg := payload(seq, prev, cp.Time)
	var errs []string
	tried := 0
	for _, k := range keys {
		if k.ID != "" && cp.KeyID != "" && k.ID != cp.KeyID {
			continue
		}
		tried++
		err := verifySig(k.Public, cp.Alg, msg, sig)
		if err == nil {
			return nil
		}
		errs = append(errs, err.Error())
	}
	if tried == 0 {
		return fmt.Errorf("signed with key %q, which the keys given do not hold", cp.KeyID)
	}
	return errors.New(strings.Join(errs, "; "))
}

// readEntries reads the lines of one file.
func readEntries(file string) ([]entry, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	var out []entry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		e := entry{file: file, line: n, hash: lineHash(line)}
		if err := json.Unmarshal(line, &e.rec); err == nil && e.rec.Seq != nil && e.rec.Prev != nil {
			e.ok = true
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read audit log %s: %w", file, err)
	}
	return out, nil
}
