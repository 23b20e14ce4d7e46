package policies

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a policy file: where it is and what is
// wrong. Line is 1-based; it is 0 when the problem has no line (for example
// a file that could not be parsed at all). Field is the dotted path of the
// offending value, such as "teams.research.images[1]", and may be empty for
// problems that concern the whole file.
type Problem struct {
	File    string
	Line    int
	Field   string
	Message string
}

// String formats the problem as "file:line: field: message", leaving out
// the line when it is unknown and the field when it is empty.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Errors is the list of every problem found while validating a policy. It
// implements error; Load and Parse return it (as an error) when a policy is
// invalid, so callers can recover the individual problems with errors.As.
type Errors []Problem

// Error joins all problems, one per line.
func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, p := range e {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sorted returns the problems sorted by file, then line, keeping the order
// in which problems of the same line were found, with exact duplicates
// removed (a YAML anchor used twice would otherwise report its problems
// twice).
func (e Errors) sorted() Errors {
	out := slices.Clone(e)
	slices.SortStableFunc(out, func(a, b Problem) int {
		if c := cmp.Compare(a.File, b.File); c != 0 {
			return c
		}
		return cmp.Compare(a.Line, b.Line)
	})
	seen := make(map[Problem]struct{}, len(out))
	uniq := out[:0]
	for _, p := range out {
		if _, dup := seen[p]; dup {
			continue
		}
		seen[p] = struct{}{}
		uniq = append(uniq, p)
	}
	return uniq
}

// pos is a place in a policy file.
type pos struct {
	file string
	line int
}

func (p pos) String() string {
	if p.line <= 0 {
		return p.file
	}
	return fmt.Sprintf("%s:%d", p.file, p.line)
}
