package syncer

import (
	"slices"
	"testing"

	"github.com/firebreak/firebreak/internal/rooms"
)

// TestSearchPages: results of one millisecond in several rooms come in one fixed order, and
// pages cut by tokens cover them once each, however the list is sorted from scratch.
func TestSearchPages(t *testing.T) {
	var all []found
	for _, room := range []string{"!b", "!a", "!c"} {
		for seq := range uint64(4) {
			all = append(all, found{roomID: room, rank: float64(seq % 2), ev: rooms.Event{Seq: seq + 1}, ts: 1000})
		}
	}
	for _, byRank := range []bool{false, true} {
		order := compareFound(byRank)
		slices.SortFunc(all, order)
		var seen []string
		start := 0
		for range len(all) {
			end := min(start+5, len(all))
			for _, f := range all[start:end] {
				seen = append(seen, searchToken(f))
			}
			if end == len(all) {
				break
			}
			after, ok := parseSearchToken(searchToken(all[end-1]))
			if !ok {
				t.Fatalf("token %q does not parse", searchToken(all[end-1]))
			}
			shuffled := slices.Clone(all)
			slices.Reverse(shuffled)
			slices.SortFunc(shuffled, order)
			for start = 0; start < len(shuffled) && order(shuffled[start], after) <= 0; start++ {
			}
		}
		if len(seen) != len(all) || len(slices.Compact(slices.Sorted(slices.Values(seen)))) != len(all) {
			t.Errorf("by rank %v: %d results seen in pages, want each of %d once", byRank, len(seen), len(all))
		}
	}
	for _, bad := range []string{"", "s", "s1_2_3", "x1_2_3_!a", "s1_2_3_", "sNaN_x_3_!a"} {
		if _, ok := parseSearchToken(bad); ok {
			t.Errorf("token %q parsed", bad)
		}
	}
}
