package store

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	cases := []struct {
		name  string
		parts []string
	}{
		{"one empty part", []string{""}},
		{"two empty parts", []string{"", ""}},
		{"empty between", []string{"a", "", "b"}},
		{"plain", []string{"abc"}},
		{"matrix ids", []string{"@alice:example.org", "!room:example.org", "m.room.member"}},
		{"dot", []string{"."}},
		{"dots", []string{"a.b.c", "..", "x."}},
		{"star", []string{"*"}},
		{"greater than", []string{">"}},
		{"wildcards together", []string{"*", ">", ".", "*.>"}},
		{"underscore", []string{"_", "__", "_a"}},
		{"base64 looking", []string{"YQ", "_YQ", "YQ=="}},
		{"spaces and slashes", []string{" ", "a b", "/", "\\"}},
		{"unicode", []string{"ü", "日本語", "🎉", "\u200b"}},
		{"control bytes", []string{"\x00", "\n\t", "\x7f"}},
		{"invalid utf-8", []string{"\xff\xfe", "a\x80b"}},
		{"long", []string{strings.Repeat("x", 1000)}},
		{"many parts", strings.Split("a b c d e f g h i j k l m n o p", " ")},
	}
	token := regexp.MustCompile(`^_[A-Za-z0-9_-]*$`)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := Key(tc.parts...)
			toks := strings.Split(k, ".")
			if len(toks) != len(tc.parts) {
				t.Fatalf("Key(%q) = %q has %d tokens, want %d", tc.parts, k, len(toks), len(tc.parts))
			}
			for _, tok := range toks {
				// A token is never empty and has nothing a NATS subject or KV key treats specially.
				if !token.MatchString(tok) {
					t.Errorf("Key(%q) = %q has token %q, which is not a safe subject token", tc.parts, k, tok)
				}
			}
			got, err := KeyParts(k)
			if err != nil {
				t.Fatalf("KeyParts(%q): %v", k, err)
			}
			if !slices.Equal(got, tc.parts) {
				t.Errorf("KeyParts(Key(%q)) = %q", tc.parts, got)
			}
		})
	}
}

// TestKeyInjective: different part lists never share a key, and a prefix of parts is a prefix
// of tokens (what Keys' filter relies on).
func TestKeyInjective(t *testing.T) {
	lists := [][]string{
		{""}, {"", ""}, {"a"}, {"a", ""}, {"", "a"}, {"a.b"}, {"a", "b"}, {"ab"}, {"a", "b", ""},
		{"@u:x", "!r:x"}, {"@u:x!r:x"}, {"@u:x", "!r:x", "t"}, {"*"}, {">"}, {"_"},
	}
	seen := map[string][]string{}
	for _, l := range lists {
		k := Key(l...)
		if prev, ok := seen[k]; ok {
			t.Errorf("Key(%q) = Key(%q) = %q", l, prev, k)
		}
		seen[k] = l
		for n := 1; n < len(l); n++ {
			if !strings.HasPrefix(k, Key(l[:n]...)+".") {
				t.Errorf("Key(%q) does not start with Key(%q) + \".\"", l, l[:n])
			}
		}
	}
}

func TestKeyPartsRejects(t *testing.T) {
	for _, k := range []string{"_!", "_a.b!", "_YQ==", "_a+b", "_a/b", "_A", "_YQ._Y"} {
		if parts, err := KeyParts(k); err == nil {
			t.Errorf("KeyParts(%q) = %q, want an error", k, parts)
		}
	}
}

// fnv1a32 is FNV-1a written out from its definition, to pin shardOf to the published hash.
func fnv1a32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func TestShardOf(t *testing.T) {
	// Known FNV-1a 32-bit values.
	for s, want := range map[string]uint32{"": 0x811c9dc5, "a": 0xe40c292c, "foobar": 0xbf9cf968} {
		if got := fnv1a32(s); got != want {
			t.Fatalf("test helper fnv1a32(%q) = %#x, want %#x", s, got, want)
		}
	}
	for _, shards := range []int{1, 2, 3, 4, 16, 1024} {
		counts := make([]int, shards)
		for i := 0; i < 4096; i++ {
			room := fmt.Sprintf("!room%d:example.org", i)
			s := shardOf(room, shards)
			if s < 0 || s >= shards {
				t.Fatalf("shardOf(%q, %d) = %d, out of range", room, shards, s)
			}
			if again := shardOf(room, shards); again != s {
				t.Fatalf("shardOf(%q, %d) = %d then %d", room, shards, s, again)
			}
			if want := int(fnv1a32(room) % uint32(shards)); s != want {
				t.Fatalf("shardOf(%q, %d) = %d, want FNV-1a %% shards = %d", room, shards, s, want)
			}
			counts[s]++
		}
		if shards <= 16 {
			for i, n := range counts {
				if n == 0 {
					t.Errorf("with %d shards, none of 4096 rooms landed in shard %d", shards, i)
				}
			}
		}
	}
	// Ids whose hash has the top bit set must not go negative.
	for _, room := range []string{"", "a", "\xff\xff\xff\xff", "!ü:x"} {
		if s := shardOf(room, 7); s < 0 || s >= 7 {
			t.Errorf("shardOf(%q, 7) = %d", room, s)
		}
	}
}
