package api

import (
	"slices"
	"testing"

	"github.com/firebreak/firebreak/internal/rooms"
)

// TestDirectoryPages: paging forward and back covers the list once, in order; the tokens hold
// while member counts change between pages; bad tokens are refused.
func TestDirectoryPages(t *testing.T) {
	list := []rooms.PublicRoom{{RoomID: "!a", NumJoinedMembers: 9}, {RoomID: "!b", NumJoinedMembers: 5},
		{RoomID: "!c", NumJoinedMembers: 5}, {RoomID: "!d", NumJoinedMembers: 2}, {RoomID: "!e", NumJoinedMembers: 1}}
	page := func(list []rooms.PublicRoom, since string, limit int) (ids []string, next, prev string) {
		t.Helper()
		resp, err := directoryPage(list, since, limit)
		if err != nil {
			t.Fatal(err)
		}
		m := resp.(map[string]any)
		for _, r := range m["chunk"].([]rooms.PublicRoom) {
			ids = append(ids, r.RoomID)
		}
		next, _ = m["next_batch"].(string)
		prev, _ = m["prev_batch"].(string)
		return ids, next, prev
	}
	var all []string
	var last string
	for since := ""; ; {
		ids, next, _ := page(list, since, 2)
		all = append(all, ids...)
		if next == "" {
			break
		}
		since, last = next, next
	}
	if !slices.Equal(all, []string{"!a", "!b", "!c", "!d", "!e"}) {
		t.Errorf("forward in pages of 2: %v", all)
	}
	// Back from the last page's start.
	_, _, prev := page(list, last, 2)
	if ids, _, _ := page(list, prev, 2); !slices.Equal(ids, []string{"!c", "!d"}) {
		t.Errorf("back from the last page: %v", ids)
	}
	// A room that grows past the page's end between pages is neither skipped nor repeated in
	// what is left.
	ids, next, _ := page(list, "", 2)
	grown := slices.Clone(list)
	grown[3].NumJoinedMembers = 20 // !d
	slices.SortFunc(grown, rooms.ComparePublicRooms)
	rest, _, _ := page(grown, next, 10)
	if !slices.Equal(ids, []string{"!a", "!b"}) || !slices.Equal(rest, []string{"!c", "!e"}) {
		t.Errorf("after a room grew: %v then %v", ids, rest)
	}
	for _, token := range []string{"x1_!a", "n", "n-1_!a", "nfoo_!a", "n5_"} {
		if _, err := directoryPage(list, token, 2); err == nil {
			t.Errorf("token %q accepted", token)
		}
	}
	if ids, next, _ := page(list, "n0_!zzz", 2); len(ids) != 0 || next != "" {
		t.Errorf("past the end: %v, next %q", ids, next)
	}
}
