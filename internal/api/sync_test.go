package api

import (
	"errors"
	"fmt"
	"testing"

	"github.com/firebreak/firebreak/internal/accounts"
	"github.com/firebreak/firebreak/internal/store"
)

// TestSessionEnded: only a token the store no longer knows ends a long poll with 401; a check
// that could not be made (a fenced node cannot read the tokens) must not log the device out.
func TestSessionEnded(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{accounts.ErrUnknownToken, true},
		{fmt.Errorf("authenticate: %w", accounts.ErrUnknownToken), true},
		{store.ErrCutOff, false},
		{store.ErrUnavailable, false},
		{errors.New("anything else"), false},
	}
	for _, tt := range tests {
		if got := sessionEnded(tt.err); got != tt.want {
			t.Errorf("sessionEnded(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
