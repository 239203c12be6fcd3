package push

import (
	"reflect"
	"testing"
)

// The evaluation defaults are the defaults, rule for rule, for any user, and building them
// for one user leaves the shared rules as they were.
func TestDefaultsToEvaluate(t *testing.T) {
	for _, userID := range []string{"@alice:example.org", "@bob:other.example", "@x:y", "not a user id"} {
		t.Run(userID, func(t *testing.T) {
			if got, want := defaultsToEvaluate(userID), DefaultRules(userID); !reflect.DeepEqual(got, want) {
				t.Errorf("defaultsToEvaluate(%q) differs from DefaultRules:\n got %+v\nwant %+v", userID, got, want)
			}
			if !reflect.DeepEqual(sharedDefaults, DefaultRules("")) {
				t.Error("the shared defaults changed")
			}
		})
	}
}
