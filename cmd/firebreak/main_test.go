package main

import (
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/firebreak/firebreak/internal/config"
)

// helpSetting matches a top-level setting in serveHelp: its key, then its default, a flow
// mapping or a single token, before the description.
var helpSetting = regexp.MustCompile(`^  ([a-z_]+):\s+(\{[^}]*\}|\S+)`)

// derivedDefaults are settings whose default the help describes in words, since it depends
// on the deployment: the cluster block, and replicas (3 in a cluster, else 1).
var derivedDefaults = map[string]bool{"cluster": true, "replicas": true}

// The help text writes every default by hand; this keeps it from drifting from config.Default.
func TestServeHelpDefaultsMatchConfig(t *testing.T) {
	want := defaultsAsYAML(t)
	seen := 0
	for _, line := range strings.Split(serveHelp, "\n") {
		m := helpSetting.FindStringSubmatch(line)
		if m == nil || derivedDefaults[m[1]] {
			continue
		}
		seen++
		var got map[string]any
		if err := yaml.Unmarshal([]byte(m[1]+": "+m[2]), &got); err != nil {
			t.Fatalf("help line %q: %v", line, err)
		}
		if d, ok := want[m[1]]; !ok {
			t.Errorf("help names %q, which the configuration does not have", m[1])
		} else if !yamlEqual(t, got[m[1]], d) {
			t.Errorf("help gives %s = %v, config.Default has %v", m[1], got[m[1]], d)
		}
	}
	if seen < 10 {
		t.Fatalf("read only %d settings from the help text; did its layout change?", seen)
	}
}

func defaultsAsYAML(t *testing.T) map[string]any {
	t.Helper()
	out, err := yaml.Marshal(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// yamlEqual compares two decoded YAML values by their encoding, which ignores the order of a
// mapping's keys.
func yamlEqual(t *testing.T, a, b any) bool {
	t.Helper()
	return encode(t, a) == encode(t, b)
}

func encode(t *testing.T, v any) string {
	t.Helper()
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestReachable(t *testing.T) {
	for _, tc := range []struct{ listen, want string }{
		{"127.0.0.1:8008", "127.0.0.1:8008"},
		{"0.0.0.0:8008", "127.0.0.1:8008"},
		{"[::]:8008", "127.0.0.1:8008"},
		{":8008", "127.0.0.1:8008"},
		{"10.1.0.1:8008", "10.1.0.1:8008"},
		{"matrix.example.org:443", "matrix.example.org:443"},
	} {
		if got := reachable(tc.listen); got != tc.want {
			t.Errorf("reachable(%q) = %q, want %q", tc.listen, got, tc.want)
		}
	}
}
