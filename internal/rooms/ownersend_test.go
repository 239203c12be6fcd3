package rooms

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/firebreak/firebreak/internal/store"
)

// TestSendAnswer: an owner's answer gives the asking node the event and position, or an error
// the API maps as it would its own (same kind, same text); anything else, an unavailable
// owner first, has the asking node send the event itself.
func TestSendAnswer(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: the event and position come back
	}{
		{"stored", nil, nil},
		{"forbidden", fmt.Errorf("%w: not allowed to send", ErrForbidden), ErrForbidden},
		{"too large", fmt.Errorf("%w: 70000 bytes", ErrTooLarge), ErrTooLarge},
		{"not found", fmt.Errorf("%w: unknown room", ErrNotFound), ErrNotFound},
		{"bad request", fmt.Errorf("%w: content", ErrBadRequest), ErrBadRequest},
		{"canonical alias", fmt.Errorf("%w: #a:b points elsewhere", ErrCanonicalAlias), ErrCanonicalAlias},
		{"unavailable", fmt.Errorf("%w: no leader", ErrUnavailable), store.ErrAskHere},
		{"unknown", errors.New("boom"), store.ErrAskHere},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a sendAnswer
			if err := json.Unmarshal(encodeSendAnswer("$ev", 42, tc.err), &a); err != nil {
				t.Fatal(err)
			}
			if tc.err == nil {
				if a.Kind != "" || a.EventID != "$ev" || a.Seq != 42 {
					t.Fatalf("answer %+v, want $ev at 42", a)
				}
				return
			}
			err := answeredError(a)
			if !errors.Is(err, tc.want) {
				t.Fatalf("answeredError = %v, want %v", err, tc.want)
			}
			if tc.want != store.ErrAskHere && err.Error() != tc.err.Error() {
				t.Errorf("text %q, want %q", err.Error(), tc.err.Error())
			}
		})
	}
	if err := answeredError(sendAnswer{Kind: "from a later build"}); !errors.Is(err, store.ErrAskHere) {
		t.Errorf("an unknown kind: %v, want ErrAskHere", err)
	}
}
