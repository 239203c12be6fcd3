package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/firebreak/firebreak/internal/accounts"
	"github.com/firebreak/firebreak/internal/rooms"
)

type createRoomBody struct {
	Visibility         string             `json:"visibility"`
	RoomAliasName      string             `json:"room_alias_name"`
	Name               string             `json:"name"`
	Topic              string             `json:"topic"`
	Invite             []string           `json:"invite"`
	RoomVersion        string             `json:"room_version"`
	CreationContent    json.RawMessage    `json:"creation_content"`
	InitialState       []rooms.StateEvent `json:"initial_state"`
	Preset             string             `json:"preset"`
	IsDirect           bool               `json:"is_direct"`
	PowerLevelOverride json.RawMessage    `json:"power_level_content_override"`
}

// knownUser refuses an invite to a user this server does not have: there is no federation to
// carry it anywhere else.
func (srv *Server) knownUser(ctx context.Context, userID string) error {
	_, err := srv.Accounts.Account(ctx, userID)
	if errors.Is(err, accounts.ErrNotFound) {
		return notFound("Unknown user %s", userID)
	}
	return err
}

func (srv *Server) createRoom(r *http.Request, s *session) (any, error) {
	var body createRoomBody
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	if err := checkOptionalEnum("visibility", body.Visibility, "public", "private"); err != nil {
		return nil, err
	}
	if strings.ContainsAny(body.RoomAliasName, ":# ") {
		return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "room_alias_name may not contain ':', '#' or spaces")
	}
	body.Invite = distinct(body.Invite) // one invite event per user, however often the list names them
	for _, u := range body.Invite {
		if !validUserID(u) {
			return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "invite: %q is not a user id", u)
		}
		if err := srv.knownUser(r.Context(), u); err != nil {
			return nil, err
		}
	}
	roomID, err := srv.Rooms.CreateRoom(r.Context(), rooms.CreateRequest{
		Creator: s.UserID, CreatorProfile: srv.memberContent(r.Context(), s.UserID, "join"),
		Preset: body.Preset, Visibility: body.Visibility, Name: body.Name, Topic: body.Topic,
		AliasLocalpart: body.RoomAliasName, Invite: body.Invite, IsDirect: body.IsDirect,
		InitialState: body.InitialState, CreationContent: body.CreationContent,
		PowerLevelOverride: body.PowerLevelOverride, RoomVersion: body.RoomVersion,
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"room_id": roomID}, nil
}

// distinct removes repeats from list, in place, keeping each first appearance.
func distinct(list []string) []string {
	seen := make(map[string]bool, len(list))
	return slices.DeleteFunc(list, func(s string) bool {
		dup := seen[s]
		seen[s] = true
		return dup
	})
}

func validUserID(u string) bool { return validID(u, '@') }

func validRoomID(id string) bool { return validID(id, '!') }

// validID reports whether id has the form sigil, localpart, ':', server: what ids are made of.
func validID(id string, sigil byte) bool {
	local, server, ok := strings.Cut(id[min(1, len(id)):], ":")
	return len(id) > 0 && id[0] == sigil && ok && local != "" && server != ""
}

// memberContent is a member event's content carrying the user's profile, as joins do.
func (srv *Server) memberContent(ctx context.Context, userID, membership string) json.RawMessage {
	content := map[string]any{"membership": membership}
	for k, v := range srv.profileFields(ctx, userID) {
		content[k] = v
	}
	b, _ := json.Marshal(content)
	return b
}

func (srv *Server) profileFields(ctx context.Context, userID string) map[string]any {
	out := map[string]any{}
	if acct, err := srv.Accounts.Account(ctx, userID); err == nil {
		if acct.DisplayName != "" {
			out["displayname"] = acct.DisplayName
		}
		if acct.AvatarURL != "" {
			out["avatar_url"] = acct.AvatarURL
		}
	}
	return out
}

// bodyAndRoom parses the JSON body into v and resolves the room the path names.
func (srv *Server) bodyAndRoom(r *http.Request, v any) (string, error) {
	if err := decodeBody(r, v); err != nil {
		return "", err
	}
	return srv.roomParam(r)
}

// roomParam resolves the {roomId} or {roomIdOrAlias} path parameter.
func (srv *Server) roomParam(r *http.Request) (string, error) {
	id := r.PathValue("roomId")
	if id == "" {
		id = r.PathValue("roomIdOrAlias")
	}
	switch {
	case strings.HasPrefix(id, "#"):
		var err error
		if id, err = srv.Rooms.ResolveAlias(r.Context(), id); err != nil {
			return "", err
		}
	case !validRoomID(id):
		return "", errorf(http.StatusBadRequest, "M_INVALID_PARAM", "%q is not a room id or alias", id)
	}
	return id, srv.Rooms.AwaitRoom(r.Context(), id)
}

type membershipBody struct {
	UserID string `json:"user_id"`
	Reason string `json:"reason"`
}

func (srv *Server) join(r *http.Request, s *session) (any, error) { return srv.changeOwn(r, s, "join") }

// knock asks to join a room whose join rule is knock: its members see the request and may
// invite the user (or reject it with a kick); the auth rules refuse it in any other room.
func (srv *Server) knock(r *http.Request, s *session) (any, error) {
	return srv.changeOwn(r, s, "knock")
}

// changeOwn sends the user's own join or knock, with their profile in it as Synapse does.
func (srv *Server) changeOwn(r *http.Request, s *session, membership string) (any, error) {
	var body membershipBody
	roomID, err := srv.bodyAndRoom(r, &body)
	if err != nil {
		return nil, err
	}
	extra := srv.profileFields(r.Context(), s.UserID)
	if _, err := srv.Rooms.ChangeMembership(r.Context(), rooms.MembershipChange{RoomID: roomID, Sender: s.UserID,
		Target: s.UserID, Membership: membership, Reason: body.Reason, Extra: extra}); err != nil {
		return nil, err
	}
	return map[string]string{"room_id": roomID}, nil
}

// changeOther sends a membership change whose target is named in the body (invite, kick, ban,
// unban).
func (srv *Server) changeOther(r *http.Request, s *session, membership string) (any, error) {
	var body membershipBody
	roomID, err := srv.bodyAndRoom(r, &body)
	if err != nil {
		return nil, err
	}
	if !validUserID(body.UserID) {
		return nil, badJSON("user_id must be a user id")
	}
	if membership == "invite" {
		if err := srv.knownUser(r.Context(), body.UserID); err != nil {
			return nil, err
		}
	}
	if membership == "unban" {
		if srv.Rooms.Model().Membership(roomID, body.UserID) != "ban" {
			return nil, forbidden("%s is not banned", body.UserID)
		}
		membership = "leave"
	}
	if membership == "kick" { // which also rejects a knock
		if !srv.isPresent(r.Context(), roomID, body.UserID) {
			return nil, forbidden("%s is not in the room", body.UserID)
		}
		membership = "leave"
	}
	_, err = srv.Rooms.ChangeMembership(r.Context(), rooms.MembershipChange{RoomID: roomID, Sender: s.UserID,
		Target: body.UserID, Membership: membership, Reason: body.Reason})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (srv *Server) invite(r *http.Request, s *session) (any, error) {
	return srv.changeOther(r, s, "invite")
}
func (srv *Server) kick(r *http.Request, s *session) (any, error) {
	return srv.changeOther(r, s, "kick")
}
func (srv *Server) ban(r *http.Request, s *session) (any, error) { return srv.changeOther(r, s, "ban") }
func (srv *Server) unban(r *http.Request, s *session) (any, error) {
	return srv.changeOther(r, s, "unban")
}

func (srv *Server) leave(r *http.Request, s *session) (any, error) {
	var body membershipBody
	roomID, err := srv.bodyAndRoom(r, &body)
	if err != nil {
		return nil, err
	}
	// A knock is withdrawn by leaving, as an invite is declined.
	if !srv.isPresent(r.Context(), roomID, s.UserID) {
		return nil, forbidden("You are not in room %s", roomID)
	}
	_, err = srv.Rooms.ChangeMembership(r.Context(), rooms.MembershipChange{RoomID: roomID, Sender: s.UserID,
		Target: s.UserID, Membership: "leave", Reason: body.Reason})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (srv *Server) forget(r *http.Request, s *session) (any, error) {
	roomID, err := srv.roomParam(r)
	if err != nil {
		return nil, err
	}
	switch srv.Rooms.Model().Membership(roomID, s.UserID) {
	case "join", "invite", "knock":
		return nil, errorf(http.StatusBadRequest, "M_UNKNOWN", "Leave the room before forgetting it")
	case "":
		return nil, notFound("You were never in room %s", roomID)
	}
	if err := srv.Sync.Forget(r.Context(), s.UserID, roomID); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (srv *Server) joinedRooms(r *http.Request, s *session) (any, error) {
	joined := []string{}
	for roomID, ms := range srv.Rooms.Model().UserRooms(s.UserID) {
		if ms == "join" {
			joined = append(joined, roomID)
		}
	}
	return map[string][]string{"joined_rooms": joined}, nil
}

// readableRoom resolves the room and checks the user may read it: members, former members
// who have not forgotten it, and anyone while it is world-readable.
func (srv *Server) readableRoom(r *http.Request, s *session) (string, error) {
	roomID, err := srv.roomParam(r)
	if err != nil {
		return "", err
	}
	if _, err := srv.Rooms.ReadableUpTo(roomID, s.UserID); err != nil {
		return "", err
	}
	if srv.Rooms.Model().Membership(roomID, s.UserID) != "join" && srv.Sync.Forgotten(s.UserID, roomID) {
		return "", forbidden("You have forgotten room %s", roomID)
	}
	return roomID, nil
}

func (srv *Server) roomState(r *http.Request, s *session) (any, error) {
	roomID, err := srv.readableRoom(r, s)
	if err != nil {
		return nil, err
	}
	state, err := srv.Rooms.VisibleState(roomID, s.UserID, rooms.End)
	if err != nil {
		return nil, err
	}
	return srv.Rooms.ClientEvents(roomID, state, viewer(s), true), nil
}

func (srv *Server) roomStateEvent(r *http.Request, s *session) (any, error) {
	roomID, err := srv.readableRoom(r, s)
	if err != nil {
		return nil, err
	}
	ev, err := srv.Rooms.VisibleStateEvent(roomID, s.UserID, r.PathValue("eventType"), r.PathValue("stateKey"))
	if err != nil {
		return nil, err
	}
	if r.URL.Query().Get("format") == "event" {
		return srv.Rooms.ClientEvent(roomID, *ev, viewer(s), true), nil
	}
	return json.RawMessage(ev.PDU.Content()), nil
}

// memberships are the values of a member event's membership.
var memberships = []string{"join", "invite", "knock", "leave", "ban"}

func (srv *Server) members(r *http.Request, s *session) (any, error) {
	roomID, err := srv.readableRoom(r, s)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	for _, param := range []string{"membership", "not_membership"} {
		if err := checkOptionalEnum(param, q.Get(param), memberships...); err != nil {
			return nil, err
		}
	}
	at := uint64(rooms.End)
	if token := q.Get("at"); token != "" {
		if at, err = srv.Sync.RoomPosition(r.Context(), roomID, token); err != nil {
			return nil, err
		}
	}
	state, err := srv.Rooms.VisibleState(roomID, s.UserID, at)
	if err != nil {
		return nil, err
	}
	var out []rooms.Event
	for _, ev := range state {
		if ev.PDU.Type() != "m.room.member" {
			continue
		}
		ms, _ := ev.PDU.Membership()
		if (q.Get("membership") != "" && ms != q.Get("membership")) || (q.Get("not_membership") != "" && ms == q.Get("not_membership")) {
			continue
		}
		out = append(out, ev)
	}
	return map[string]any{"chunk": srv.Rooms.ClientEvents(roomID, out, viewer(s), true)}, nil
}

// joinedMembers answers only members: the list is the room's current one, which a former
// member may no longer see.
func (srv *Server) joinedMembers(r *http.Request, s *session) (any, error) {
	roomID, err := srv.roomParam(r)
	if err != nil {
		return nil, err
	}
	if srv.freshMembership(r.Context(), roomID, s.UserID, "join") != "join" {
		if _, known := srv.Rooms.Model().Info(roomID); !known {
			return nil, notFound("Unknown room %s", roomID)
		}
		return nil, forbidden("You are not in room %s", roomID)
	}
	joined := map[string]any{}
	for _, ev := range srv.Rooms.Model().State(roomID) {
		if ms, _ := ev.PDU.Membership(); ev.PDU.Type() == "m.room.member" && ms == "join" {
			var c struct {
				DisplayName string `json:"displayname"`
				AvatarURL   string `json:"avatar_url"`
			}
			_ = json.Unmarshal(ev.PDU.Content(), &c)
			joined[*ev.PDU.StateKey()] = struct {
				DisplayName string `json:"display_name,omitempty"`
				AvatarURL   string `json:"avatar_url,omitempty"`
			}{c.DisplayName, c.AvatarURL}
		}
	}
	return map[string]any{"joined": joined}, nil
}

func (srv *Server) getEvent(r *http.Request, s *session) (any, error) {
	roomID, err := srv.readableRoom(r, s)
	if err != nil {
		return nil, err
	}
	ev, err := srv.Rooms.VisibleEvent(r.Context(), roomID, s.UserID, r.PathValue("eventId"))
	if err != nil {
		return nil, err
	}
	if srv.Sync.Ignores(s.UserID, ev) {
		return nil, notFound("Event not found") // as one the user may not see
	}
	return srv.Rooms.ClientEvent(roomID, ev, viewer(s), true), nil
}

// freshMembership is the user's membership in the room. When this node's view has none of
// the wanted ones it first catches up with the room's latest events: a join made through
// another node a moment ago must not be refused here.
func (srv *Server) freshMembership(ctx context.Context, roomID, userID string, wanted ...string) string {
	ms := srv.Rooms.Model().Membership(roomID, userID)
	if !slices.Contains(wanted, ms) && srv.Rooms.CatchUpRoom(ctx, roomID) == nil {
		ms = srv.Rooms.Model().Membership(roomID, userID)
	}
	return ms
}

// presentMemberships are those a leave or a kick can end: a member, an invitee, a knock.
var presentMemberships = []string{"join", "invite", "knock"}

// isPresent reports whether the user is a member, an invitee or knocking, on the latest state.
func (srv *Server) isPresent(ctx context.Context, roomID, userID string) bool {
	return slices.Contains(presentMemberships, srv.freshMembership(ctx, roomID, userID, presentMemberships...))
}

func viewer(s *session) rooms.Viewer { return rooms.Viewer{UserID: s.UserID, DeviceID: s.DeviceID} }

// sendEvent is the one path every client-authored room event takes, in the room the request's
// path names (resolved once, by the caller): only a joined member may send.
func (srv *Server) sendEvent(ctx context.Context, s *session, roomID string, p rooms.Proto, txnID string) (any, error) {
	if err := srv.requireJoined(ctx, roomID, s.UserID); err != nil {
		return nil, err
	}
	return srv.sendJoined(ctx, s, roomID, p, txnID)
}

// sendJoined is sendEvent for a sender already found joined.
func (srv *Server) sendJoined(ctx context.Context, s *session, roomID string, p rooms.Proto, txnID string) (any, error) {
	p.RoomID, p.Sender = roomID, s.UserID
	eventID, err := srv.Rooms.Send(ctx, p, rooms.SendOptions{Device: s.DeviceID, TxnID: txnID})
	if err != nil {
		return nil, err
	}
	return map[string]string{"event_id": eventID}, nil
}

// requireJoined refuses a user who is not joined to the room, checked again on the leader's
// latest state before the refusal (freshMembership).
func (srv *Server) requireJoined(ctx context.Context, roomID, userID string) error {
	if ms := srv.freshMembership(ctx, roomID, userID, "join"); ms != "join" {
		if _, known := srv.Rooms.Model().Info(roomID); !known {
			return notFound("Unknown room %s", roomID)
		}
		return forbidden("You are not in room %s", roomID)
	}
	return nil
}

func (srv *Server) sendMessage(r *http.Request, s *session) (any, error) {
	content, err := rawObject(r)
	if err != nil {
		return nil, err
	}
	evType := r.PathValue("eventType")
	if evType == "m.room.redaction" {
		return nil, badJSON("Use the redact endpoint to redact events")
	}
	roomID, err := srv.roomParam(r)
	if err != nil {
		return nil, err
	}
	return srv.sendEvent(r.Context(), s, roomID, rooms.Proto{Type: evType, Content: content}, r.PathValue("txnId"))
}

func (srv *Server) sendState(r *http.Request, s *session) (any, error) {
	content, err := rawObject(r)
	if err != nil {
		return nil, err
	}
	key := r.PathValue("stateKey")
	evType := r.PathValue("eventType")
	if evType == "m.room.create" {
		return nil, forbidden("A room's m.room.create is written once, by createRoom")
	}
	roomID, err := srv.roomParam(r)
	if err != nil {
		return nil, err
	}
	if evType == "m.room.member" {
		if err := srv.checkOwnProfileChange(roomID, key, s.UserID, content); err != nil {
			return nil, err
		}
	}
	return srv.sendEvent(r.Context(), s, roomID, rooms.Proto{Type: evType, StateKey: &key, Content: content}, "")
}

// checkOwnProfileChange accepts a member event sent as state only when it restates a member's
// own join, with a room-specific display name or avatar (what Element's /myroomnick sends),
// and those are strings (or null), as clients take them to be.
func (srv *Server) checkOwnProfileChange(roomID, stateKey, sender string, content json.RawMessage) error {
	var c struct {
		Membership  string          `json:"membership"`
		DisplayName json.RawMessage `json:"displayname"`
		AvatarURL   json.RawMessage `json:"avatar_url"`
	}
	if stateKey != sender || json.Unmarshal(content, &c) != nil || c.Membership != "join" ||
		srv.Rooms.Model().Membership(roomID, sender) != "join" {
		return forbidden("Use the membership endpoints (join, invite, leave, kick, ban) to change a membership")
	}
	if !stringOrNull(c.DisplayName) || !stringOrNull(c.AvatarURL) {
		return badJSON("displayname and avatar_url must be strings or null")
	}
	return nil
}

// stringOrNull reports whether a raw JSON value is absent, null or a string.
func stringOrNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null" || raw[0] == '"'
}

func (srv *Server) redact(r *http.Request, s *session) (any, error) {
	var body struct {
		Reason string `json:"reason"`
	}
	roomID, err := srv.bodyAndRoom(r, &body)
	if err != nil {
		return nil, err
	}
	// Members only learn whether the event exists.
	if err := srv.requireJoined(r.Context(), roomID, s.UserID); err != nil {
		return nil, err
	}
	target := r.PathValue("eventId")
	if _, err := srv.Rooms.FindEvent(r.Context(), roomID, target); err != nil {
		return nil, err
	}
	// The target goes in the content as well as at the top level: room version 11 reads it
	// from the content (and its redaction keeps it there), and the spec asks servers to
	// serve it there for older versions too.
	content := map[string]any{"redacts": target}
	if body.Reason != "" {
		content["reason"] = body.Reason
	}
	b, _ := json.Marshal(content)
	return srv.sendJoined(r.Context(), s, roomID, rooms.Proto{Type: "m.room.redaction", Redacts: target, Content: b}, r.PathValue("txnId"))
}

func (srv *Server) roomAliases(r *http.Request, s *session) (any, error) {
	roomID, err := srv.roomParam(r)
	if err != nil {
		return nil, err
	}
	aliases, err := srv.Rooms.Aliases(r.Context(), s.UserID, roomID)
	if err != nil {
		return nil, err
	}
	return map[string][]string{"aliases": aliases}, nil
}

func (srv *Server) getAlias(r *http.Request, _ *session) (any, error) {
	roomID, err := srv.Rooms.ResolveAlias(r.Context(), r.PathValue("alias"))
	if err != nil {
		return nil, err
	}
	return map[string]any{"room_id": roomID, "servers": []string{srv.Config.ServerName}}, nil
}

func (srv *Server) putAlias(r *http.Request, s *session) (any, error) {
	var body struct {
		RoomID string `json:"room_id"`
	}
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	alias := r.PathValue("alias")
	if !strings.HasPrefix(alias, "#") || !strings.HasSuffix(alias, ":"+srv.Config.ServerName) {
		return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "Alias must be #name:%s", srv.Config.ServerName)
	}
	switch {
	case body.RoomID == "":
		return nil, missingParam("room_id")
	case !validRoomID(body.RoomID):
		return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "room_id: %q is not a room id", body.RoomID)
	}
	err := srv.Rooms.SetAlias(r.Context(), s.UserID, alias, body.RoomID)
	if errors.Is(err, rooms.ErrAliasInUse) {
		// The spec's answer here; createRoom's for the same case is 400 M_ROOM_IN_USE.
		return nil, errorf(http.StatusConflict, "M_UNKNOWN", "Room alias %s already exists", alias)
	}
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (srv *Server) deleteAlias(r *http.Request, s *session) (any, error) {
	if err := srv.Rooms.DeleteAlias(r.Context(), s.UserID, r.PathValue("alias")); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (srv *Server) receipt(r *http.Request, s *session) (any, error) {
	var body struct {
		ThreadID *string `json:"thread_id"`
	}
	roomID, err := srv.bodyAndRoom(r, &body)
	if err != nil {
		return nil, err
	}
	rt := r.PathValue("receiptType")
	if rt == "m.fully_read" {
		if body.ThreadID != nil {
			return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "m.fully_read takes no thread_id")
		}
		return struct{}{}, srv.Sync.SetFullyRead(r.Context(), s.UserID, roomID, r.PathValue("eventId"))
	}
	if !rooms.ReceiptTypes[rt] {
		return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "Unknown receipt type %q", rt)
	}
	// The spec's thread ids: "main" or the id of a thread's root event (which SetReceipt
	// looks for in the room); absent for an unthreaded receipt.
	thread := ""
	if body.ThreadID != nil {
		thread = *body.ThreadID
		if thread != "main" && !strings.HasPrefix(thread, "$") {
			return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "thread_id must be \"main\" or an event id")
		}
	}
	return struct{}{}, srv.Rooms.SetReceipt(r.Context(), roomID, s.UserID, rt, r.PathValue("eventId"), thread)
}

func (srv *Server) readMarkers(r *http.Request, s *session) (any, error) {
	var body struct {
		FullyRead   string `json:"m.fully_read"`
		Read        string `json:"m.read"`
		ReadPrivate string `json:"m.read.private"`
	}
	roomID, err := srv.bodyAndRoom(r, &body)
	if err != nil {
		return nil, err
	}
	// Every marker's event is checked before any marker moves, so a request refused for one
	// moves none; membership first, so that a non-member learns nothing of the room's events.
	if srv.Rooms.Model().Membership(roomID, s.UserID) != "join" {
		return nil, forbidden("You are not in this room")
	}
	for _, eventID := range []string{body.Read, body.ReadPrivate, body.FullyRead} {
		if eventID == "" {
			continue
		}
		if _, err := srv.Rooms.FindEvent(r.Context(), roomID, eventID); err != nil {
			return nil, err
		}
	}
	for _, m := range []struct{ receiptType, eventID string }{{"m.read", body.Read}, {"m.read.private", body.ReadPrivate}} {
		if m.eventID != "" {
			if err := srv.Rooms.SetReceipt(r.Context(), roomID, s.UserID, m.receiptType, m.eventID, ""); err != nil {
				return nil, err
			}
		}
	}
	if body.FullyRead != "" {
		if err := srv.Sync.SetFullyRead(r.Context(), s.UserID, roomID, body.FullyRead); err != nil {
			return nil, err
		}
	}
	return struct{}{}, nil
}

func (srv *Server) typing(r *http.Request, s *session) (any, error) {
	var body struct {
		Typing  *bool `json:"typing"`
		Timeout int64 `json:"timeout"`
	}
	if r.PathValue("userId") != s.UserID {
		return nil, forbidden("You may only set your own typing state")
	}
	roomID, err := srv.bodyAndRoom(r, &body)
	if err != nil {
		return nil, err
	}
	if body.Typing == nil {
		return nil, missingParam("typing")
	}
	if body.Timeout < 0 {
		return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "timeout may not be negative")
	}
	if body.Timeout == 0 {
		body.Timeout = 30000 // not given: the spec names no default
	}
	return struct{}{}, srv.Rooms.SetTyping(r.Context(), roomID, s.UserID, *body.Typing, body.Timeout)
}

// propagateProfile re-sends the user's member event in every joined room so other members see
// a changed display name or avatar, as the spec asks. It announces again while the stored
// profile differs from what it announced: two changes at once (a client setting its name
// and its avatar together) could otherwise be announced in the wrong order, and the rooms
// would keep the older profile. The last announcement in a room then carries a profile read
// after every change that came before it. Once every room has it, the note (at revision
// note) that it was not yet announced goes. A profile that cannot be read is not announced:
// announcing none would blank the user's name in every room.
func (srv *Server) propagateProfile(ctx context.Context, userID string, note uint64) error {
	var announced *memberProfile
	for range maxProfileAnnouncements {
		acct, err := srv.Accounts.Account(ctx, userID)
		if err != nil {
			return err
		}
		p := &memberProfile{DisplayName: acct.DisplayName, AvatarURL: acct.AvatarURL}
		if announced != nil && *p == *announced {
			return srv.Accounts.ProfileAnnounced(ctx, userID, note)
		}
		if err := srv.announceMember(ctx, userID, p); err != nil {
			return err
		}
		announced = p
	}
	return nil
}

// maxProfileAnnouncements bounds propagateProfile against a profile that keeps changing.
const maxProfileAnnouncements = 4

// memberProfile is the profile a member event carries.
type memberProfile struct {
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// announceMember sends the user's join with the profile to each joined room whose member
// event does not carry it yet.
func (srv *Server) announceMember(ctx context.Context, userID string, p *memberProfile) error {
	content, _ := json.Marshal(struct {
		Membership string `json:"membership"`
		*memberProfile
	}{"join", p})
	model := srv.Rooms.Model()
	for roomID, ms := range model.UserRooms(userID) {
		if ms != "join" {
			continue
		}
		if ev := model.StateEvent(roomID, "m.room.member", userID); ev != nil {
			var has memberProfile
			if json.Unmarshal(ev.PDU.Content(), &has) == nil && has == *p {
				continue // told already
			}
		}
		target := userID
		if _, err := srv.Rooms.Send(ctx, rooms.Proto{RoomID: roomID, Sender: userID, Type: "m.room.member",
			StateKey: &target, Content: content}, rooms.SendOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// RunProfileSweeps finishes, when the node starts and every sweepEvery until ctx ends, the
// profile announcements that were left undone: by a node that died, or that failed to reach a
// room. Every node sweeps; a room that has the profile already is left alone, so an
// announcement still going on elsewhere costs only a look at each room. It needs the read
// model to have caught up, which tells it the user's rooms and what their member events say.
func (srv *Server) RunProfileSweeps(ctx context.Context) {
	for {
		srv.announceUnannounced(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(sweepEvery):
		}
	}
}

// sweepEvery is how often the profile announcements left undone are looked for.
const sweepEvery = 10 * time.Minute

func (srv *Server) announceUnannounced(ctx context.Context) {
	users, err := srv.Accounts.UnannouncedProfiles(ctx)
	if err != nil {
		srv.Log.Warn("could not list the profile changes left unannounced", "err", err)
		return
	}
	for userID, note := range users {
		if ctx.Err() != nil {
			return // stopping
		}
		srv.Log.Info("announcing a profile change left unannounced", "user", userID)
		if err := srv.propagateProfile(ctx, userID, note); err != nil {
			srv.Log.Warn("profile change not sent to every room", "user", userID, "err", err)
		}
	}
}
