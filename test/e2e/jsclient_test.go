package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMatrixJSSDK runs the scenarios in test/jsclient with matrix-js-sdk, the SDK Element is
// built on: chat.mjs (two clients register, sync, share a room, talk, page back through
// history and redact) and crypto.mjs (the same with the SDK's Rust crypto, Element's, in an
// encrypted room). The SDK is installed from test/jsclient's lock file on first use.
func TestMatrixJSSDK(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("Node.js is not installed: the matrix-js-sdk scenarios need node and npm")
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "test", "jsclient")
	installSDK(t, dir)
	srv := startServer(t, serverOpts{})
	for _, script := range []string{"chat.mjs", "crypto.mjs"} {
		t.Run(script, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, script, srv.URL)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "all checks passed") {
				t.Fatalf("matrix-js-sdk scenario %s failed (%v):\n%s", script, err, out)
			}
		})
	}
}

// installSDK runs `npm ci` in dir unless its node_modules is there already.
func installSDK(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "matrix-js-sdk")); err == nil {
		return
	}
	cmd := exec.CommandContext(t.Context(), "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
}
