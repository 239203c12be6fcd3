package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestRestart: everything survives a stop and start on the same data dir:
// access tokens, passwords, rooms, history, and sync tokens.
func TestRestart(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{})
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	room := alice.createRoom(t, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Before the restart"})
	_, err := alice.InviteUser(testCtx(t), room, &mautrix.ReqInviteUser{UserID: bob.UserID})
	mustOK(t, err, "invite")
	bob.join(t, room.String(), room)
	var want []string
	for i := range 6 {
		sender := []*user{alice, bob}[i%2]
		want = append(want, fmt.Sprintf("before restart %d from %s", i, sender.Localpart))
		sender.sendText(t, room, want[i])
	}
	alice.waitForMessages(t, map[id.RoomID][]string{room: want[len(want)-1:]})

	srv.Restart()

	t.Run("OldTokenWorks", func(t *testing.T) {
		who, err := alice.Whoami(testCtx(t))
		mustOK(t, err, "whoami with pre-restart token")
		if who.UserID != alice.UserID || who.DeviceID != alice.DeviceID {
			t.Errorf("whoami = %+v, want %s on %s", who, alice.UserID, alice.DeviceID)
		}
	})
	t.Run("PasswordLogin", func(t *testing.T) {
		loginAs(t, srv, bob.Localpart, bob.Password)
	})
	t.Run("JoinedRooms", func(t *testing.T) {
		expectJoinedRooms(t, alice, room)
		expectJoinedRooms(t, bob, room)
		var name event.RoomNameEventContent
		mustOK(t, bob.StateEvent(testCtx(t), room, event.StateRoomName, "", &name), "room name")
		if name.Name != "Before the restart" {
			t.Errorf("room name after restart = %q", name.Name)
		}
	})
	t.Run("History", func(t *testing.T) {
		events, _ := roomMessages(t, bob, room, bob.syncToken(t), "", mautrix.DirectionBackward, nil, 50)
		expectUniqueIDs(t, events)
		expectBodies(t, reversed(events), want)
	})
	t.Run("NewMessageSynced", func(t *testing.T) {
		// alice.since is a pre-restart next_batch: it must still be usable.
		body := "after restart"
		bob.sendText(t, room, body)
		got := alice.waitForMessages(t, map[id.RoomID][]string{room: {body}})
		if got[body].Sender != bob.UserID {
			t.Errorf("%q came from %s, want %s", body, got[body].Sender, bob.UserID)
		}
		if slices.ContainsFunc(want, func(b string) bool { return got[b] != nil }) {
			t.Errorf("incremental sync with a pre-restart token replayed old messages")
		}
	})
}

// TestProfileAnnouncedAfterACrash: a display name change tells each of the user's rooms in
// turn; a server killed half way through, started again, finishes telling them, so no room
// keeps showing the old name for good.
func TestProfileAnnouncedAfterACrash(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{})
	alice := registerUser(t, srv, "alice")
	var rooms []id.RoomID
	for range 60 {
		rooms = append(rooms, alice.createRoom(t, &mautrix.ReqCreateRoom{Preset: "private_chat"}))
	}
	for round := range 3 {
		name := fmt.Sprintf("Alice %d", round)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = alice.SetDisplayName(context.Background(), name) // cut by the crash
		}()
		// The profile is stored first, then each room told: the crash comes in between.
		for profile, _ := alice.GetOwnDisplayName(testCtx(t)); profile == nil || profile.DisplayName != name; {
			time.Sleep(2 * time.Millisecond)
			profile, _ = alice.GetOwnDisplayName(testCtx(t))
		}
		srv.Crash()
		<-done
		waitFor(t, "every room to show the profile's name", func() (bool, string) {
			profile, err := alice.GetOwnDisplayName(testCtx(t))
			if err != nil {
				return false, err.Error()
			}
			for _, room := range rooms {
				var member event.MemberEventContent
				if err := alice.StateEvent(testCtx(t), room, event.StateMember, alice.UserID.String(), &member); err != nil {
					return false, err.Error()
				}
				if member.Displayname != profile.DisplayName {
					return false, fmt.Sprintf("round %d: room %s shows %q, the profile says %q", round, room, member.Displayname, profile.DisplayName)
				}
			}
			return true, ""
		})
	}
	// Not a test that passes because every crash came too early or too late.
	if !srv.logs.Contains("announcing a profile change left unannounced") {
		t.Error("no crash left a profile change unannounced: the test did not test the sweep")
	}
}
