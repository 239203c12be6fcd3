package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// testDirectories: rooms created public are listed, searched and paged through; only a
// member with power over the room's name may unlist one; the user directory finds users who
// share a room with the searcher or sit in a listed room, and no one else.
func testDirectories(t *testing.T, srv *server) {
	alice, bob, carol, dave := registerUser(t, srv, "alice"), registerUser(t, srv, "bob"), registerUser(t, srv, "carol"), registerUser(t, srv, "dave")
	lounge := alice.createRoom(t, &mautrix.ReqCreateRoom{Preset: "public_chat", Visibility: "public", Name: "Firebreak lounge", Topic: "fire drills"})
	carol.join(t, lounge.String(), lounge)
	// Listed, but invite-only: strangers see neither it nor who is in it.
	private := alice.createRoom(t, &mautrix.ReqCreateRoom{Preset: "private_chat", Visibility: "public", Name: "Firebreak back office"})
	alice.invite(t, private, dave)
	dave.join(t, private.String(), private)
	// Listed, and then left empty.
	empty := bob.createRoom(t, &mautrix.ReqCreateRoom{Preset: "public_chat", Visibility: "public", Name: "Firebreak attic"})
	_, err := bob.LeaveRoom(testCtx(t), empty)
	mustOK(t, err, "leave the attic")
	var more []id.RoomID
	for range 2 {
		more = append(more, alice.createRoom(t, &mautrix.ReqCreateRoom{Preset: "public_chat", Visibility: "public", Name: "Firebreak annex"}))
	}
	listed := func(u *user, body string) []id.RoomID {
		t.Helper()
		var ids []id.RoomID
		since := ""
		for range 10 {
			req := map[string]any{"limit": 1, "filter": json.RawMessage(body)}
			if since != "" {
				req["since"] = since
			}
			raw, _ := json.Marshal(req)
			resp := rawRequest(t, "POST", clientURL(srv, "v3/publicRooms"), u.AccessToken, raw)
			resp.expectOK(t)
			var page mautrix.RespPublicRooms
			if err := json.Unmarshal(resp.Raw, &page); err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Chunk {
				ids = append(ids, r.RoomID)
			}
			if since = page.NextBatch; since == "" {
				break
			}
		}
		return ids
	}
	t.Run("PublicRooms", func(t *testing.T) {
		all := listed(bob, `{"generic_search_term":"firebreak"}`)
		want := append([]id.RoomID{lounge}, more...) // the lounge has two members, the annexes one
		if len(all) != 3 || all[0] != lounge || !slices.Contains(all, more[0]) || !slices.Contains(all, more[1]) {
			t.Errorf("listed %v, want %v, the lounge first", all, want)
		}
		if slices.Contains(all, private) || slices.Contains(all, empty) {
			t.Errorf("an invite-only or an empty room is listed: %v", all)
		}
		// A limit of 0 is the whole list, with no token to loop on.
		whole := rawRequest(t, "POST", clientURL(srv, "v3/publicRooms"), bob.AccessToken, []byte(`{"limit":0,"filter":{"generic_search_term":"firebreak"}}`))
		whole.expectOK(t)
		if chunk, _ := whole.Body["chunk"].([]any); len(chunk) != 3 || whole.Body["next_batch"] != nil {
			t.Errorf("limit 0: %s", whole.Raw)
		}
		none := rawRequest(t, "POST", clientURL(srv, "v3/publicRooms"), bob.AccessToken, []byte(`{"filter":{"generic_search_term":"no such room"}}`))
		none.expectOK(t)
		if chunk, ok := none.Body["chunk"].([]any); !ok || len(chunk) != 0 {
			t.Errorf("no match: chunk %s, want []", none.Raw)
		}
		rawRequest(t, "GET", clientURL(srv, "v3/publicRooms?since=o9223372036854775807"), bob.AccessToken, nil).expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
		if got := listed(bob, `{"generic_search_term":"DRILLS"}`); !slices.Equal(got, []id.RoomID{lounge}) {
			t.Errorf("a search by topic found %v", got)
		}
		resp, err := bob.PublicRooms(testCtx(t), &mautrix.ReqPublicRooms{})
		mustOK(t, err, "GET /publicRooms")
		if resp.TotalRoomCountEstimate < 3 {
			t.Errorf("total_room_count_estimate %d", resp.TotalRoomCountEstimate)
		}
	})
	t.Run("Visibility", func(t *testing.T) {
		path := clientURL(srv, "v3/directory/list/room/"+url.PathEscape(lounge.String()))
		if resp := rawRequest(t, "GET", path, "", nil); resp.Body["visibility"] != "public" {
			t.Errorf("the lounge's visibility: %s", resp.Raw)
		}
		rawRequest(t, "PUT", path, carol.AccessToken, []byte(`{"visibility":"private"}`)).expectError(t, http.StatusForbidden, "M_FORBIDDEN")
		rawRequest(t, "PUT", path, alice.AccessToken, []byte(`{"visibility":"secret"}`)).expectError(t, http.StatusBadRequest, "M_INVALID_PARAM")
		rawRequest(t, "PUT", path, alice.AccessToken, []byte(`{"visibility":"private"}`)).expectOK(t)
		if slices.Contains(listed(bob, `{}`), lounge) {
			t.Errorf("an unlisted room is still listed")
		}
		rawRequest(t, "PUT", path, alice.AccessToken, []byte(`{}`)).expectOK(t) // public, the spec's default
		if !slices.Contains(listed(bob, `{}`), lounge) {
			t.Errorf("a room listed again is not listed")
		}
		rawRequest(t, "GET", clientURL(srv, "v3/directory/list/room/!nope:"+serverName), "", nil).expectError(t, http.StatusNotFound, "M_NOT_FOUND")
	})
	t.Run("UserDirectory", func(t *testing.T) {
		mustOK(t, carol.SetDisplayName(testCtx(t), "Carol Firewatch"), "set carol's name")
		search := func(u *user, term string) []id.UserID {
			resp, err := u.SearchUserDirectory(testCtx(t), term, 10)
			mustOK(t, err, "search the user directory")
			var ids []id.UserID
			for _, r := range resp.Results {
				ids = append(ids, r.UserID)
			}
			return ids
		}
		// Bob shares no room with carol: he finds her through the listed lounge.
		waitFor(t, "carol's new name in the lounge", func() (bool, string) {
			got := search(bob, "firewatch")
			return slices.Equal(got, []id.UserID{carol.UserID}), ""
		})
		if got := search(bob, dave.Localpart); len(got) != 0 {
			t.Errorf("dave, only in an invite-only room, was found: %v", got)
		}
		if got := search(alice, dave.Localpart); !slices.Equal(got, []id.UserID{dave.UserID}) {
			t.Errorf("alice, who shares a room with dave, found %v", got)
		}
		rawRequest(t, "POST", clientURL(srv, "v3/user_directory/search"), bob.AccessToken, []byte(`{}`)).expectError(t, http.StatusBadRequest, "M_MISSING_PARAM")
	})
}
