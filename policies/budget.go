package policies

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// The budget of one policy file, checked before and right after decoding
// and before the file is walked: YAML aliases and merge keys ("<<: *a")
// let a few hundred bytes stand for millions of nodes (a 425-byte file of
// merge keys nested six deep, ten per level, took 1.6 s to walk; each
// further level costs ten times more), so the walk's cost is bounded by
// the size of the document with every alias expanded.
const (
	// MaxFileBytes is the largest policy file read.
	MaxFileBytes = 1 << 20
	// MaxNodes is the largest number of YAML nodes a file may have, every
	// alias and merge key counted as the nodes it stands for.
	MaxNodes = 100_000
	// MaxDepth is the deepest nesting of a file, aliases expanded.
	MaxDepth = 64
	// MaxAliases is the largest number of aliases (*name) in a file.
	MaxAliases = 10_000
)

// extent is the size of a node with its aliases expanded.
type extent struct {
	nodes  int // saturates above MaxNodes
	height int // saturates above MaxDepth
}

// budget measures a decoded document, each node once (aliases point at
// nodes already measured), so measuring costs time in proportion to the
// file, not to its expansion.
type budget struct {
	memo    map[*yaml.Node]extent
	busy    map[*yaml.Node]bool
	aliases int
	cycle   *yaml.Node // the first alias found inside what it refers to
}

// checkBudget reports, as problems of file, a document that exceeds the
// budget; the parser must not walk it then.
func (p *parser) checkBudget(root *yaml.Node) bool {
	b := &budget{memo: make(map[*yaml.Node]extent), busy: make(map[*yaml.Node]bool)}
	e := b.measure(root)
	switch {
	case b.cycle != nil:
		p.add(b.cycle, "", "alias *%s is inside the node it refers to: it stands for an endless document", b.cycle.Value)
	case b.aliases > MaxAliases:
		p.add(root, "", "too many aliases (*name): %d, at most %d", b.aliases, MaxAliases)
	case e.nodes > MaxNodes:
		n := b.culprit(root, func(e extent) int { return e.nodes })
		p.add(n, "", "the policy expands to more than %d YAML nodes (aliases and merge keys counted as what they stand for); the largest expansion starts here", MaxNodes)
	case e.height > MaxDepth:
		n := b.culprit(root, func(e extent) int { return e.height })
		p.add(n, "", "the policy nests more than %d levels deep (aliases and merge keys counted as what they stand for); the deepest expansion starts here", MaxDepth)
	default:
		return true
	}
	return false
}

func (b *budget) measure(n *yaml.Node) extent {
	if n == nil {
		return extent{}
	}
	if e, ok := b.memo[n]; ok {
		return e
	}
	if b.busy[n] {
		return extent{nodes: MaxNodes + 1, height: MaxDepth + 1}
	}
	b.busy[n] = true
	e := extent{nodes: 1}
	if n.Kind == yaml.AliasNode {
		b.aliases++
		if b.busy[n.Alias] && b.cycle == nil {
			b.cycle = n
		}
		t := b.measure(n.Alias)
		e = extent{nodes: t.nodes, height: t.height}
	} else {
		for _, c := range n.Content {
			ce := b.measure(c)
			e.nodes = min(e.nodes+ce.nodes, MaxNodes+1)
			e.height = max(e.height, ce.height)
		}
		e.height = min(e.height+1, MaxDepth+1)
	}
	delete(b.busy, n)
	b.memo[n] = e
	return e
}

// culprit descends from n along the child with the most of what by
// measures, and returns the first alias met (where the expansion starts,
// in the file), or else the node where by stops growing.
func (b *budget) culprit(n *yaml.Node, by func(extent) int) *yaml.Node {
	for i := 0; i <= MaxDepth && n != nil; i++ {
		if n.Kind == yaml.AliasNode {
			return n
		}
		var next *yaml.Node
		for _, c := range n.Content {
			if next == nil || by(b.memo[c]) > by(b.memo[next]) {
				next = c
			}
		}
		if next == nil {
			return n
		}
		n = next
	}
	return n
}

// tooLarge is the problem of a file over MaxFileBytes.
func tooLarge(file string, size int64) Problem {
	return Problem{File: file, Message: fmt.Sprintf("the file is larger than %d bytes (%d); split it, or remove what it does not need", MaxFileBytes, size)}
}
