package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
)

// testTags: a room tagged as favourite shows the tag through GET and in /sync's room account
// data; removing it removes it; another user's tags are not reachable.
func testTags(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := sharedRoom(t, alice, bob)
	mustOK(t, alice.AddTag(testCtx(t), room, event.RoomTagFavourite, 0.25), "tag as favourite")
	mustOK(t, alice.AddTag(testCtx(t), room, "u.work", 0.5), "tag as u.work")
	tags, err := alice.GetTags(testCtx(t), room)
	mustOK(t, err, "get tags")
	if order, _ := tags.Tags[event.RoomTagFavourite].Order.Float64(); len(tags.Tags) != 2 || order != 0.25 {
		t.Errorf("tags = %+v, want favourite (0.25) and u.work", tags.Tags)
	}
	alice.syncUntil(t, "m.tag in the room's account data", func(r *mautrix.RespSync) bool {
		for _, evt := range r.Rooms.Join[room].AccountData.Events {
			if evt.Type.Type == "m.tag" {
				return true
			}
		}
		return false
	})

	mustOK(t, alice.RemoveTag(testCtx(t), room, event.RoomTagFavourite), "remove favourite")
	tags, err = alice.GetTags(testCtx(t), room)
	mustOK(t, err, "get tags after removing one")
	if _, still := tags.Tags[event.RoomTagFavourite]; still || len(tags.Tags) != 1 {
		t.Errorf("after removing favourite, tags = %+v", tags.Tags)
	}

	others := clientURL(srv, "v3/user/"+url.PathEscape(alice.UserID.String())+"/rooms/"+url.PathEscape(room.String())+"/tags")
	rawRequest(t, "GET", others, bob.AccessToken, nil).expectError(t, http.StatusForbidden, "M_FORBIDDEN")
	rawRequest(t, "PUT", others+"/m.lowpriority", alice.AccessToken, []byte(`{"order":"first"}`)).expectError(t, http.StatusBadRequest, "M_BAD_JSON")
	rawRequest(t, "PUT", others+"/m.lowpriority", alice.AccessToken, []byte(`{"order":5}`)).expectError(t, http.StatusBadRequest, "M_BAD_JSON")

	// Each request is under the body cap, but the room's tags together would not fit a stored
	// value: the second is refused, not failed.
	pad := []byte(`{"pad":"` + strings.Repeat("x", 600_000) + `"}`)
	rawRequest(t, "PUT", others+"/u.big1", alice.AccessToken, pad).expectOK(t)
	rawRequest(t, "PUT", others+"/u.big2", alice.AccessToken, pad).expectError(t, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
}
