package rooms

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/firebreak/firebreak/internal/store"
)

// StateEvent is a state event named in a createRoom request.
type StateEvent struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

// CreateRequest is a createRoom request, already parsed.
type CreateRequest struct {
	Creator            string
	CreatorProfile     json.RawMessage // the creator's member event content
	Preset             string
	Visibility         string
	Name               string
	Topic              string
	AliasLocalpart     string
	Invite             []string
	IsDirect           bool
	InitialState       []StateEvent
	CreationContent    json.RawMessage
	PowerLevelOverride json.RawMessage
	RoomVersion        string
}

// CreateRoom makes a room and returns its id. The events go in the spec's order: create,
// the creator's join, power levels, alias, preset rules, initial state, name, topic, invites.
func (s *Service) CreateRoom(ctx context.Context, req CreateRequest) (string, error) {
	version := s.defaultVersion
	if req.RoomVersion != "" {
		version = gomatrixserverlib.RoomVersion(req.RoomVersion)
	}
	impl, err := gomatrixserverlib.GetRoomVersion(version)
	if err != nil || !gomatrixserverlib.StableRoomVersion(version) {
		return "", fmt.Errorf("%w: unsupported room version %q", ErrUnsupportedVersion, req.RoomVersion)
	}
	pr, err := presetFor(req)
	if err != nil {
		return "", err
	}
	roomID := "!" + randomToken(18) + ":" + s.serverName
	alias := ""
	if req.AliasLocalpart != "" {
		alias = "#" + req.AliasLocalpart + ":" + s.serverName
		if err := s.claimAlias(ctx, alias, roomID, req.Creator); err != nil {
			return "", err
		}
	}
	made := false
	defer func() { // deferred, so that not even a panic leaves the alias naming no room
		if !made { // also when the request was cancelled, which may be why it failed
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), store.WaitLimit)
			defer cancel()
			s.releaseAlias(rctx, alias, roomID)
		}
	}()
	if err := s.createEvents(ctx, req, pr, impl, roomID, alias); err != nil {
		return "", err
	}
	made = true
	if req.Visibility == "public" {
		// The room exists now: failing the request would have the client make another.
		// Its creator can list it again (PUT /directory/list/room).
		if err := s.list(ctx, roomID, true); err != nil {
			s.log.Warn("listing a new public room in the directory", "room", roomID, "err", err)
		}
	}
	return roomID, nil
}

// createEvents builds the new room's first events against a draft of its state and stores
// them in one atomic batch, so a createRoom that fails leaves no half-made room behind.
func (s *Service) createEvents(ctx context.Context, req CreateRequest, pr preset, impl gomatrixserverlib.IRoomVersion, roomID, alias string) error {
	protos, err := s.creationEvents(req, pr, impl.Version(), alias)
	if err != nil {
		return err
	}
	if len(protos) > store.MaxAtomicBatch {
		return fmt.Errorf("%w: a new room's first events (its invites and initial_state included) are "+
			"stored all together, at most %d of them; this one would have %d", ErrInvalidParam, store.MaxAtomicBatch, len(protos))
	}
	for _, p := range protos {
		p.RoomID = roomID // the room's own alias, claimed before, points here already
		if err := s.checkCanonicalAlias(ctx, p); err != nil {
			return err
		}
	}
	info := RoomInfo{ID: roomID, Shard: s.st.RoomShard(roomID), Version: impl}
	for attempt := 1; ; attempt++ {
		info.Seen = s.model.applied[info.Shard].Load()
		batch, err := s.buildCreation(protos, info)
		if err != nil {
			return err
		}
		seq, err := s.st.AppendRoomEvents(ctx, roomID, 0, batch)
		if errors.Is(err, store.ErrConflict) && attempt < maxCreateAttempts {
			// Not a rival for this room (its id is new): with group commit, another writer
			// stored something after the batch was built; anywhere, the batch itself landed
			// with its answer lost. Catch up, and build again while the room is unknown.
			if info, err = s.catchUp(ctx, roomID, info, err); err != nil {
				return err
			}
			if _, known := s.model.Info(roomID); known {
				return nil // the id is this call's own: one of its batches landed, whole
			}
			continue
		}
		if err != nil {
			return unavailable(err)
		}
		return s.awaitSeq(ctx, info.Shard, seq)
	}
}

// maxCreateAttempts bounds how often a new room's batch is built again after a conflict.
const maxCreateAttempts = 3

// buildCreation builds the new room's events in order, each on the draft state before it.
func (s *Service) buildCreation(protos []Proto, info RoomInfo) ([]store.NewRoomEvent, error) {
	d := draft{}
	batch := make([]store.NewRoomEvent, 0, len(protos))
	for _, p := range protos {
		p.RoomID = info.ID
		pdu, err := s.build(p, info, d)
		switch {
		case errors.Is(err, ErrForbidden):
			// The request itself implies this state (the creator's own power too low, an
			// invite of the creator): the spec's 400, not a refusal of the caller.
			return nil, fmt.Errorf("%w: the room's %s event: %v", ErrInvalidRoomState, p.Type, err)
		case err != nil:
			return nil, err
		}
		ev := &Event{PDU: pdu}
		d[stateKey{pdu.Type(), *pdu.StateKey()}] = ev
		info.Head = ev
		batch = append(batch, store.NewRoomEvent{JSON: pdu.JSON(), EventID: pdu.EventID(), Seen: info.Seen})
	}
	return batch, nil
}

// draft is the state of a room that is being created and not yet stored.
type draft map[stateKey]*Event

func (d draft) StateEvent(_, evType, key string) *Event { return d[stateKey{evType, key}] }

type preset struct {
	joinRule, historyVisibility, guestAccess string
	inviteesAdmins                           bool
}

func presetFor(req CreateRequest) (preset, error) {
	name := req.Preset
	if name == "" {
		name = "private_chat"
		if req.Visibility == "public" {
			name = "public_chat"
		}
	}
	switch name {
	case "private_chat":
		return preset{"invite", "shared", "can_join", false}, nil
	case "trusted_private_chat":
		return preset{"invite", "shared", "can_join", true}, nil
	case "public_chat":
		return preset{"public", "shared", "forbidden", false}, nil
	}
	return preset{}, fmt.Errorf("%w: unknown preset %q", ErrBadRequest, name)
}

func (s *Service) creationEvents(req CreateRequest, pr preset, version gomatrixserverlib.RoomVersion, alias string) ([]Proto, error) {
	createContent := map[string]any{}
	if len(req.CreationContent) > 0 {
		if err := json.Unmarshal(req.CreationContent, &createContent); err != nil {
			return nil, fmt.Errorf("%w: creation_content must be an object", ErrBadRequest)
		}
		if createContent == nil { // null, as an absent power_level_content_override is
			createContent = map[string]any{}
		}
	}
	createContent["room_version"] = string(version)
	// Room version 11 dropped "creator": the sender is the creator.
	if n, err := strconv.Atoi(string(version)); err == nil && n < 11 {
		createContent["creator"] = req.Creator
	}
	if err := checkCreateContent(createContent); err != nil {
		return nil, err
	}
	pl, err := powerLevels(req, pr)
	if err != nil {
		return nil, err
	}
	member := req.CreatorProfile
	if len(member) == 0 {
		member = json.RawMessage(`{"membership":"join"}`)
	}
	evs := []Proto{
		stateProto(req.Creator, "m.room.create", "", mustJSON(createContent)),
		stateProto(req.Creator, "m.room.member", req.Creator, member),
		stateProto(req.Creator, "m.room.power_levels", "", pl),
	}
	if alias != "" {
		evs = append(evs, stateProto(req.Creator, "m.room.canonical_alias", "", mustJSON(map[string]string{"alias": alias})))
	}
	evs = append(evs,
		stateProto(req.Creator, "m.room.join_rules", "", mustJSON(map[string]string{"join_rule": pr.joinRule})),
		stateProto(req.Creator, "m.room.history_visibility", "", mustJSON(map[string]string{"history_visibility": pr.historyVisibility})),
		stateProto(req.Creator, "m.room.guest_access", "", mustJSON(map[string]string{"guest_access": pr.guestAccess})),
	)
	for _, st := range req.InitialState {
		if st.Type == "" || st.Type == "m.room.create" || st.Type == "m.room.member" {
			return nil, fmt.Errorf("%w: initial_state may not set %q", ErrBadRequest, st.Type)
		}
		// Without content a state event would be stored as {}: empty power levels lock the
		// creator out, as a PUT of state without a body would (api.rawObject).
		if c := bytes.TrimSpace(st.Content); len(c) == 0 || c[0] != '{' {
			return nil, fmt.Errorf("%w: initial_state's %s needs content, a JSON object", ErrBadRequest, st.Type)
		}
		evs = append(evs, stateProto(req.Creator, st.Type, st.StateKey, st.Content))
	}
	if req.Name != "" {
		evs = append(evs, stateProto(req.Creator, "m.room.name", "", mustJSON(map[string]string{"name": req.Name})))
	}
	if req.Topic != "" {
		evs = append(evs, stateProto(req.Creator, "m.room.topic", "", mustJSON(map[string]string{"topic": req.Topic})))
	}
	for _, invitee := range req.Invite {
		content := map[string]any{"membership": "invite"}
		if req.IsDirect {
			content["is_direct"] = true
		}
		evs = append(evs, stateProto(req.Creator, "m.room.member", invitee, mustJSON(content)))
	}
	return evs, nil
}

// checkCreateContent refuses create content the auth rules cannot read (a "type",
// "m.federate" or "predecessor" of the wrong JSON type): they would refuse it only while
// checking a later event, as forbidden and in words about that event.
func checkCreateContent(c map[string]any) error {
	var parsed gomatrixserverlib.CreateContent
	err := json.Unmarshal(mustJSON(c), &parsed)
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Errorf("%w: creation_content.%s cannot be a %s", ErrBadRequest, typeErr.Field, typeErr.Value)
	} else if err != nil {
		return fmt.Errorf("%w: creation_content: %v", ErrBadRequest, err)
	}
	return nil
}

func powerLevels(req CreateRequest, pr preset) (json.RawMessage, error) {
	users := map[string]int64{req.Creator: 100}
	if pr.inviteesAdmins {
		for _, u := range req.Invite {
			users[u] = 100
		}
	}
	pl := map[string]any{
		"users": users, "users_default": 0, "events_default": 0, "state_default": 50,
		"ban": 50, "kick": 50, "redact": 50, "invite": 0,
		"notifications": map[string]int64{"room": 50},
		"events": map[string]int64{
			"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
			"m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
			"m.room.server_acl": 100, "m.room.encryption": 100,
		},
	}
	if len(req.PowerLevelOverride) > 0 {
		var override map[string]any
		if err := json.Unmarshal(req.PowerLevelOverride, &override); err != nil {
			return nil, fmt.Errorf("%w: power_level_content_override must be an object", ErrBadRequest)
		}
		for k, v := range override {
			pl[k] = v
		}
	}
	return mustJSON(pl), nil
}

func stateProto(sender, evType, key string, content json.RawMessage) Proto {
	return Proto{Sender: sender, Type: evType, StateKey: &key, Content: content}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with maps of plain values
	}
	return b
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
