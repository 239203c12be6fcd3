package push

import (
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Globs are matched by a small hand-written matcher rather than by compiling
// them to regexps: patterns come from users, and a pattern such as "*a*a*a…"
// makes a regexp engine do work proportional to pattern size × body size at
// every step, whereas splitting on '*' and placing each literal piece
// leftmost-first stays close to linear for such patterns.

// anyRune stands for '?' inside a compiled segment. It is negative, so it can
// never collide with a decoded character (invalid UTF-8 decodes to U+FFFD).
const anyRune rune = -1

// glob is a pattern split at its stars: parts[0] is anchored at the start,
// the last part at the end, and a star sits between each pair of parts. A
// pattern without stars has exactly one part.
type glob struct {
	parts [][]rune
}

// parseGlob compiles a Matrix glob: '*' matches any run of characters and
// '?' exactly one; everything else is literal and compared case-insensitively.
func parseGlob(pattern string) glob {
	var g glob
	for _, p := range strings.Split(pattern, "*") {
		seg := make([]rune, 0, len(p))
		for _, r := range p {
			if r == '?' {
				seg = append(seg, anyRune)
			} else {
				seg = append(seg, fold(r))
			}
		}
		g.parts = append(g.parts, seg)
	}
	return g
}

// compiled holds the globs already compiled: unread counts match the same few patterns (each
// user's name and display name, "@room") against every event for every member, and compiling
// them each time was most of an evaluation's allocations. It is emptied when it reaches
// compiledLimit entries, and patterns over compiledMaxBytes (a display name can be long) are
// compiled each time instead, so it holds at most a few megabytes. Keys are copies: a display
// name read from an event would otherwise keep the event's whole content alive.
var compiled = struct {
	sync.RWMutex
	globs map[compiledKey]glob
}{globs: map[compiledKey]glob{}}

const (
	compiledLimit    = 8192
	compiledMaxBytes = 256
)

type compiledKey struct {
	pattern string
	literal bool // a display name: '*' and '?' are ordinary characters
}

// compiledGlob is parseGlob(pattern), or literalGlob(pattern) when literal, from the cache.
// The globs it returns are shared and only read.
func compiledGlob(pattern string, literal bool) glob {
	key := compiledKey{pattern, literal}
	compiled.RLock()
	g, ok := compiled.globs[key]
	compiled.RUnlock()
	if ok {
		return g
	}
	if literal {
		g = literalGlob(pattern)
	} else {
		g = parseGlob(pattern)
	}
	if len(pattern) > compiledMaxBytes {
		return g
	}
	key.pattern = strings.Clone(pattern)
	compiled.Lock()
	if len(compiled.globs) >= compiledLimit {
		clear(compiled.globs)
	}
	compiled.globs[key] = g
	compiled.Unlock()
	return g
}

// literalGlob matches s exactly (case-insensitively), with no wildcards; used
// for display names, where '*' and '?' are ordinary characters.
func literalGlob(s string) glob {
	seg := make([]rune, 0, len(s))
	for _, r := range s {
		seg = append(seg, fold(r))
	}
	return glob{parts: [][]rune{seg}}
}

// fold maps a rune to a canonical case. Going through upper then lower also
// catches characters such as 'ſ' or the Kelvin sign whose lower case alone
// would not equal the ASCII letter they fold to. The spec leaves the exact
// meaning of "case-insensitive" to the implementation.
func fold(r rune) rune { return unicode.ToLower(unicode.ToUpper(r)) }

// text is a value prepared for matching: folded runes for comparison and the
// original runes for word-boundary checks, which are defined on raw ASCII.
type text struct {
	orig, folded []rune
}

func newText(s string) text {
	orig := []rune(s)
	folded := make([]rune, len(orig))
	for i, r := range orig {
		folded[i] = fold(r)
	}
	return text{orig: orig, folded: folded}
}

// matchGlob reports whether value as a whole matches the glob.
func matchGlob(pattern, value string) bool {
	// Most conditions compare a plain ASCII pattern (an event type, a msgtype) with an ASCII
	// value as a whole: that is ASCII case-insensitive equality, without building runes.
	if plainASCII(pattern) && plainASCII(value) && !strings.ContainsAny(pattern, "*?") {
		return strings.EqualFold(pattern, value)
	}
	return matchGlobText(pattern, newText(value), false)
}

func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// matchGlobText reports whether a prepared value matches the glob, either as a whole or, with
// words set, as some substring that starts and ends at word boundaries.
func matchGlobText(pattern string, t text, words bool) bool {
	g := compiledGlob(pattern, false)
	if words {
		return g.matchWords(t)
	}
	return g.matchWhole(t)
}

// matchWhole anchors the first part at 0 and the last at the end; middle
// parts are placed leftmost-first, which is optimal because the stars around
// them absorb whatever is skipped.
func (g glob) matchWhole(t text) bool {
	n, first := len(t.folded), g.parts[0]
	if len(g.parts) == 1 {
		return len(first) == n && segAt(t.folded, 0, first)
	}
	if !segAt(t.folded, 0, first) {
		return false
	}
	pos, ok := g.placeMiddle(t, len(first))
	last := g.parts[len(g.parts)-1]
	return ok && n-len(last) >= pos && segAt(t.folded, n-len(last), last)
}

// matchWords finds a substring matching the whole glob that begins after a
// boundary and ends before one. Taking the earliest possible start is safe:
// it leaves the most room for every later part.
func (g glob) matchWords(t text) bool {
	first := g.parts[0]
	if len(g.parts) == 1 {
		return g.matchWordsNoStar(t)
	}
	start := -1
	for s := 0; s+len(first) <= len(t.folded) && start < 0; s++ {
		if t.boundaryBefore(s) && segAt(t.folded, s, first) {
			start = s
		}
	}
	if start < 0 {
		return false
	}
	pos, ok := g.placeMiddle(t, start+len(first))
	last := g.parts[len(g.parts)-1]
	for e := pos + len(last); ok && e <= len(t.folded); e++ {
		if t.boundaryAfter(e) && segAt(t.folded, e-len(last), last) {
			return true
		}
	}
	return false
}

// matchWordsNoStar handles a star-free pattern, whose length is fixed: try
// every start that sits on a boundary and also ends on one.
func (g glob) matchWordsNoStar(t text) bool {
	seg := g.parts[0]
	first := anyRune // an empty pattern: every boundary pair is a match
	if len(seg) > 0 {
		first = seg[0]
	}
	for s := 0; s+len(seg) <= len(t.folded); s++ {
		// The first character rules out most starts, more cheaply than the boundaries.
		if (first == anyRune || t.folded[s] == first) &&
			t.boundaryBefore(s) && t.boundaryAfter(s+len(seg)) && segAt(t.folded, s, seg) {
			return true
		}
	}
	return false
}

// placeMiddle places the parts strictly between the first and last
// leftmost-first from pos, returning the position after the last one placed.
func (g glob) placeMiddle(t text, pos int) (int, bool) {
	for _, seg := range g.parts[1 : len(g.parts)-1] {
		i := find(t.folded, pos, seg)
		if i < 0 {
			return 0, false
		}
		pos = i + len(seg)
	}
	return pos, true
}

// find returns the first index >= from where seg matches, or -1.
func find(s []rune, from int, seg []rune) int {
	for i := from; i+len(seg) <= len(s); i++ {
		if segAt(s, i, seg) {
			return i
		}
	}
	return -1
}

// segAt reports whether seg matches s at offset i; anyRune matches any one
// character. Callers guarantee i >= 0; running off the end is a mismatch.
func segAt(s []rune, i int, seg []rune) bool {
	if i+len(seg) > len(s) {
		return false
	}
	for j, r := range seg {
		if r != anyRune && r != s[i+j] {
			return false
		}
	}
	return true
}

// boundaryBefore: position i starts a word if it is the start of the value
// or the preceding character is not in [A-Za-z0-9_].
func (t text) boundaryBefore(i int) bool { return i == 0 || !isWordChar(t.orig[i-1]) }

// boundaryAfter: position i ends a word if it is the end of the value or the
// character at i is not in [A-Za-z0-9_].
func (t text) boundaryAfter(i int) bool { return i == len(t.orig) || !isWordChar(t.orig[i]) }

// isWordChar is the spec's word character set, ASCII only on purpose.
func isWordChar(r rune) bool {
	return r == '_' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
}
