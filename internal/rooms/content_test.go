package rooms

import (
	"strings"
	"testing"
)

func TestValidAlias(t *testing.T) {
	cases := []struct {
		alias string
		valid bool
	}{
		{"#lounge:localhost", true},
		{"#lounge:example.org", true},
		{"#a:host:8448", true},
		{"#a:[::1]:8448", true},
		{"#a:192.0.2.1", true},
		{"#ü:example.org", true},
		{"#a#b:example.org", true},
		{"#" + strings.Repeat("a", 242) + ":example.org", true},  // 255 bytes,
		{"#" + strings.Repeat("a", 243) + ":example.org", false}, // 256 bytes
		{"lounge:localhost", false},
		{"#:localhost", false},
		{"#lounge", false},
		{"#lounge:", false},
		{"#a:b:localhost", false}, // a ':' in the localpart leaves "b:localhost" as the server
		{"#a:my_server", false},
		{"#a:host:65536", false},
		{"#a\x00b:localhost", false},
		{"#a b:localhost", false},
		{"#a\xffb:localhost", false},
	}
	for _, tc := range cases {
		if got := validAlias(tc.alias); got != tc.valid {
			t.Errorf("validAlias(%q) = %v, want %v", tc.alias, got, tc.valid)
		}
	}
}
