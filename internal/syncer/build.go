package syncer

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"

	"github.com/firebreak/firebreak/internal/filter"
	"github.com/firebreak/firebreak/internal/push"
	"github.com/firebreak/firebreak/internal/rooms"
)

// build assembles everything for the user between since (nil: from the start) and now.
func (s *Service) build(ctx context.Context, req Request, since *Token, now Token) *Response {
	resp := newResponse()
	resp.members = s.lazy.begin(req)
	req.ignored = s.ignoredBy(req.UserID)
	var busy []busyRoom // where members may have come and gone
	for roomID, membership := range s.rooms.Model().UserRooms(req.UserID) {
		left := membership == "leave" || membership == "ban"
		if left && s.Forgotten(req.UserID, roomID) {
			continue
		}
		w := s.window(req, roomID, since, now)
		if since != nil && w.head > since.Rooms[w.shard] {
			busy = append(busy, busyRoom{roomID, membership, since.Rooms[w.shard], w.upTo})
		}
		if !req.Filter.Room.AllowsRoom(roomID) {
			continue
		}
		w.members = resp.members
		switch membership {
		case "join":
			if jr := s.joinedRoom(req, w); jr != nil {
				resp.Rooms.Join[roomID] = jr
			}
		case "invite":
			if w.me != nil && req.ignored[w.me.Sender] {
				continue // the spec: no invites from ignored users
			}
			if state, ok := s.strippedState(req, w); ok {
				resp.Rooms.Invite[roomID] = &InvitedRoom{InviteState: state}
			}
		case "knock":
			if state, ok := s.strippedState(req, w); ok {
				resp.Rooms.Knock[roomID] = &KnockedRoom{KnockState: state}
			}
		case "leave", "ban":
			if lr := s.leftRoom(req, w); lr != nil {
				resp.Rooms.Leave[roomID] = lr
			}
		}
	}
	now.ToDevice = s.addEncryption(ctx, resp, req, since, now, busy)
	// Set after the to-device messages, which may not all fit in one response.
	resp.NextBatch = now.String()
	var dataSince uint64
	if since != nil && !req.FullState {
		dataSince = since.AccountData
	}
	pushRulesSent := false
	for _, it := range s.data.Since(req.UserID, dataSince) {
		if it.RoomID == "" && req.Filter.AccountData.Matches(filter.Event{Type: it.Type, Sender: req.UserID}) {
			content := it.Content
			if it.Type == push.AccountDataType {
				content, pushRulesSent = pushRulesContent(req.UserID, it.Content), true
			}
			resp.AccountData.Events = append(resp.AccountData.Events, accountDataEvent(it.Type, content))
		}
	}
	// Clients read their rules from the first sync; a user who never changed one has none stored.
	if (since == nil || req.FullState) && !pushRulesSent &&
		req.Filter.AccountData.Matches(filter.Event{Type: push.AccountDataType, Sender: req.UserID}) {
		resp.AccountData.Events = append(resp.AccountData.Events,
			accountDataEvent(push.AccountDataType, pushRulesContent(req.UserID, nil)))
	}
	return resp
}

// pushRulesContent is m.push_rules as clients must see it: the stored rules laid over this
// version's defaults, as GET /pushrules/ and unread counts use them.
func pushRulesContent(userID string, stored []byte) []byte {
	content, err := push.DocumentJSON(userID, stored)
	if err != nil {
		return stored
	}
	return content
}

// window is one room's slice of a sync: events after `after` up to `upTo` are new (after is 0
// when the client has none of the room's timeline: an initial sync, newly joined or invited).
// full means the client gets all the state, not only what changed: it has none of the room,
// or asked for full_state, which leaves the timeline limited by its token all the same.
type window struct {
	roomID      string
	shard       int
	head        uint64 // the room's latest event when the window was read
	after, upTo uint64
	full        bool
	since       *Token
	now         Token
	me          *rooms.Event // the user's member event
	members     *memberMemo  // lazy-loaded members the client has; nil when it wants them all
}

func (s *Service) window(req Request, roomID string, since *Token, now Token) window {
	info, _ := s.rooms.Model().Info(roomID)
	w := window{roomID: roomID, shard: info.Shard, head: info.HeadSeq, upTo: now.Rooms[info.Shard],
		full: since == nil || req.FullState, since: since, now: now}
	if since != nil {
		w.after = since.Rooms[info.Shard]
		if w.quiet() {
			return w // the user's member event is no newer than the room's head: nothing to decide
		}
	}
	w.me = s.rooms.Model().StateEvent(roomID, "m.room.member", req.UserID)
	if since != nil && s.newToClient(req.UserID, w) {
		w.full, w.after = true, 0
	}
	return w
}

// quiet reports an incremental window with no room event in it, which is most rooms of most
// syncs: no timeline, no state and no membership change to look for. now's positions were
// applied before the window read the room's head, so the head covers every event up to upTo.
func (w window) quiet() bool { return !w.full && w.head <= w.after }

// newToClient reports whether the user, not joined at the token, joined or was invited since:
// the client has none of the room's timeline yet. That includes joining and leaving again
// within the window (rooms.leave then shows the room up to the leave, with its state). A member
// who only changed their name, who left, or who was banned or uninvited after leaving, is not.
func (s *Service) newToClient(userID string, w window) bool {
	if w.me == nil || w.me.Seq <= w.after {
		return false
	}
	model := s.rooms.Model()
	if model.MembershipAt(w.roomID, userID, w.after) == "join" {
		return false
	}
	ms, _ := w.me.PDU.Membership()
	return ms == "join" || ms == "invite" || model.JoinedSince(w.roomID, userID, w.after)
}

// changed reports whether the user's membership event is new in this window.
func (w window) changed() bool {
	return w.me != nil && w.me.Seq <= w.upTo && (w.since == nil || w.me.Seq > w.since.Rooms[w.shard])
}

func (s *Service) joinedRoom(req Request, w window) *JoinedRoom {
	ephemeral, data := s.ephemeral(req, w), s.roomAccountData(req, w)
	if w.quiet() && len(ephemeral.Events) == 0 && len(data.Events) == 0 {
		return nil
	}
	v := rooms.Viewer{UserID: req.UserID, DeviceID: req.DeviceID}
	tl, start := s.timeline(req, w, w.upTo, v)
	summary := s.summary(w.roomID, req.UserID)
	jr := &JoinedRoom{
		Timeline:    tl,
		State:       s.stateBefore(req, w, start, w.upTo, tl, v, summary.Heroes),
		Ephemeral:   ephemeral,
		AccountData: data,
		Summary:     summary,
	}
	if !w.full && len(tl.Events) == 0 && len(jr.State.Events) == 0 && len(jr.Ephemeral.Events) == 0 && len(jr.AccountData.Events) == 0 {
		return nil
	}
	s.unreadCounts(req, w.roomID, jr)
	return jr
}

// unreadCounts fills in the room's unread counts, split by thread if the filter asks.
func (s *Service) unreadCounts(req Request, roomID string, jr *JoinedRoom) {
	if !req.Filter.Room.Timeline.UnreadThreadNotifications {
		n, h := s.rooms.UnreadCounts(roomID, req.UserID)
		jr.UnreadNotifications = UnreadCount{NotificationCount: n, HighlightCount: h}
		return
	}
	main, threads := s.rooms.ThreadUnreadCounts(roomID, req.UserID)
	jr.UnreadNotifications = unreadCount(main)
	jr.UnreadThreadNotifications = make(map[string]UnreadCount, len(threads))
	for root, c := range threads {
		jr.UnreadThreadNotifications[root] = unreadCount(c)
	}
}

func unreadCount(c rooms.Counts) UnreadCount {
	return UnreadCount{NotificationCount: c.Notifications, HighlightCount: c.Highlights}
}

// strippedState is what an invited or knocking user sees of a room, when it changed since
// their token: its name, avatar, rules and the like, and their own member event.
func (s *Service) strippedState(req Request, w window) (EventList, bool) {
	if !w.full && !w.changed() {
		return EventList{}, false
	}
	return EventList{Events: s.rooms.StrippedState(w.roomID, req.UserID)}, true
}

func (s *Service) leftRoom(req Request, w window) *LeftRoom {
	if w.me == nil || !w.changed() || (w.since == nil && !req.Filter.Room.IncludeLeave) {
		return nil
	}
	v := rooms.Viewer{UserID: req.UserID, DeviceID: req.DeviceID}
	readable, err := s.rooms.ReadableUpTo(w.roomID, req.UserID)
	if err != nil {
		// Never a member (a rejected invite, a ban before joining): only their own event.
		return &LeftRoom{
			Timeline:    Timeline{Events: s.rooms.ClientEvents(w.roomID, []rooms.Event{*w.me}, v, false)},
			State:       StateList{Events: []rooms.ClientEvent{}},
			AccountData: EventList{Events: []any{}},
		}
	}
	// A former member sees the room up to the moment they left (a ban after leaving changes
	// nothing they may read) and, last, the event that made them a former member.
	upTo := min(w.me.Seq, readable)
	tl, start := s.timeline(req, w, upTo, v)
	if n := len(tl.Events); n == 0 || tl.Events[n-1].EventID != w.me.PDU.EventID() {
		tl.Events = append(tl.Events, s.rooms.ClientEvent(w.roomID, *w.me, v, false))
	}
	return &LeftRoom{
		Timeline:    tl,
		State:       s.stateBefore(req, w, start, upTo, tl, v, nil),
		AccountData: s.roomAccountData(req, w),
	}
}

// timeline returns the newest events in (w.after, upTo] the filter keeps, at most its limit,
// and the position it starts after.
func (s *Service) timeline(req Request, w window, upTo uint64, v rooms.Viewer) (Timeline, uint64) {
	f := req.Filter.Room.Timeline
	limit := f.LimitOr(defaultTimeline, maxTimeline)
	evs, gap := s.newestEvents(req.UserID, w, upTo, limit+1, keepFor(f, w.roomID, req.ignored))
	limited := len(evs) > limit || gap
	evs = evs[:min(len(evs), limit)]
	slices.Reverse(evs)
	prev := upTo
	if len(evs) > 0 {
		prev = evs[0].Seq - 1
	}
	return Timeline{
		Events:    s.rooms.ClientEvents(w.roomID, evs, v, false),
		Limited:   limited,
		PrevBatch: roomToken(prev).String(),
	}, prev
}

// newestEvents reads the window's newest events the user may see, and reports a gap of events
// before them it leaves out. A user joined for the whole window may see all of it (the hot
// path: no visibility check); any other window (a room new to the client, a leave, a kick and
// rejoin while a device was away) is read through the visibility rules, and only up to the
// newest event hidden from the user: the state before the timeline then holds what changed
// in what they may not see.
func (s *Service) newestEvents(userID string, w window, upTo uint64, limit int, keep func(*rooms.Event) bool) ([]rooms.Event, bool) {
	model := s.rooms.Model()
	if !w.full && model.JoinedThroughout(w.roomID, userID, w.after, upTo) {
		return model.Range(w.roomID, w.after, upTo, false, limit, keep), false
	}
	return model.NewestVisibleRun(w.roomID, userID, w.after, upTo, limit, keep)
}

// stateBefore is the state the client needs besides the timeline (stateAt). With lazy-loaded
// members, a full window sends only the members of the timeline's senders, the summary's
// heroes (which the spec requires: clients name a room after them) and the user; every window
// sends those members' events as they stood at the timeline's start, which the client must
// not miss, unless this device's last response gave it them (lazy.go).
func (s *Service) stateBefore(req Request, w window, at, upTo uint64, tl Timeline, v rooms.Viewer, heroes []string) StateList {
	f := req.Filter.Room.State
	state := s.stateAt(req, w, at, upTo, tl)
	if !f.LazyLoadMembers {
		out := slices.DeleteFunc(state, func(e rooms.Event) bool { return !f.Matches(filterEvent(w.roomID, &e)) })
		return StateList{Events: s.rooms.ClientEvents(w.roomID, out, v, false)}
	}
	senders := map[string]bool{} // and heroes: the members whose events the client needs
	if w.full {
		senders[req.UserID] = true
		w.members.fresh(w.roomID)
	}
	for _, e := range tl.Events {
		senders[e.Sender] = true
	}
	for _, hero := range heroes {
		senders[hero] = true
	}
	var out []rooms.Event
	sent := map[string]bool{} // members in out
	for _, e := range state {
		isMember := e.PDU.Type() == "m.room.member"
		if !f.Matches(filterEvent(w.roomID, &e)) || (isMember && w.full && !senders[*e.PDU.StateKey()]) {
			continue
		}
		if isMember {
			sent[*e.PDU.StateKey()] = true
			w.members.sent(w.roomID, *e.PDU.StateKey(), e.PDU.EventID())
		}
		out = append(out, e)
	}
	for sender := range senders {
		e, ok := s.rooms.Model().MemberAt(w.roomID, sender, at)
		if !ok || sent[sender] || !f.Matches(filterEvent(w.roomID, &e)) || w.members.hasEvent(w.roomID, sender, e.PDU.EventID()) {
			continue
		}
		w.members.sent(w.roomID, sender, e.PDU.EventID())
		out = append(out, e)
	}
	for _, e := range tl.Events { // newer than the state before them
		if e.Type == "m.room.member" && e.StateKey != nil {
			w.members.sent(w.roomID, *e.StateKey, e.EventID)
		}
	}
	slices.SortFunc(out, func(a, b rooms.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	return StateList{Events: s.rooms.ClientEvents(w.roomID, out, v, false)}
}

// stateAt is the room's state as it stood where the timeline starts (after position at): all
// of it when the window is full, otherwise what changed since the client's token, as the spec
// defines sync's state. A key that changed after that start only in events the timeline's
// filter dropped would then reach the client nowhere, so its last value up to upTo is sent
// instead (as Synapse does). Events the filter keeps are in the timeline, which holds no event
// hidden from the user (newestEvents stops at the newest one), so they are not sent this way.
func (s *Service) stateAt(req Request, w window, at, upTo uint64, tl Timeline) []rooms.Event {
	from := w.after
	if w.full {
		from = 0
	}
	model := s.rooms.Model()
	state := model.StateDelta(w.roomID, from, at)
	f := req.Filter.Room.Timeline
	if f.KeepsEveryEvent() {
		return state
	}
	dropped := droppedState(model.StateDelta(w.roomID, at, upTo), tl, keepFor(f, w.roomID, nil))
	if len(dropped) == 0 {
		return state
	}
	index := make(map[[2]string]int, len(state))
	for i, e := range state {
		index[stateKeyOf(e.PDU.Type(), e.PDU.StateKey())] = i
	}
	for _, e := range dropped {
		if i, ok := index[stateKeyOf(e.PDU.Type(), e.PDU.StateKey())]; ok {
			state[i] = e
		} else {
			state = append(state, e)
		}
	}
	slices.SortFunc(state, func(a, b rooms.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	return state
}

// droppedState is the entries of later the timeline's filter dropped, less the keys the
// timeline itself sets: the client applies the timeline after the state, so a value there
// would win over a newer one sent in state.
func droppedState(later []rooms.Event, tl Timeline, keep func(*rooms.Event) bool) []rooms.Event {
	inTimeline := map[[2]string]bool{}
	for _, e := range tl.Events {
		if e.StateKey != nil {
			inTimeline[stateKeyOf(e.Type, e.StateKey)] = true
		}
	}
	return slices.DeleteFunc(later, func(e rooms.Event) bool {
		return keep(&e) || inTimeline[stateKeyOf(e.PDU.Type(), e.PDU.StateKey())]
	})
}

func stateKeyOf(evType string, key *string) [2]string { return [2]string{evType, *key} }

// keepFor is what a list of room events keeps: what the filter matches, but for state, nothing
// an ignored user sent (the spec's m.ignored_user_list; nil: nobody ignored).
func keepFor(f filter.RoomEventFilter, roomID string, ignored map[string]bool) func(*rooms.Event) bool {
	return func(e *rooms.Event) bool {
		return !hidden(ignored, e) && f.Matches(filterEvent(roomID, e))
	}
}

// Ignores reports whether the user ignores an event.
func (s *Service) Ignores(userID string, ev rooms.Event) bool {
	return hidden(s.ignoredBy(userID), &ev)
}

// hidden reports whether ignoring the users in ignored hides the event: one they sent, but for
// state, which the room needs.
func hidden(ignored map[string]bool, e *rooms.Event) bool { return !e.IsState() && ignored[e.Sender] }

// ignoredBy is the set of users the user ignores, from their m.ignored_user_list.
func (s *Service) ignoredBy(userID string) map[string]bool {
	content, err := s.data.Get(userID, "", ignoredUsersType)
	if err != nil {
		return nil
	}
	var list struct {
		Ignored map[string]json.RawMessage `json:"ignored_users"`
	}
	if json.Unmarshal(content, &list) != nil || len(list.Ignored) == 0 {
		return nil
	}
	ignored := make(map[string]bool, len(list.Ignored))
	for user := range list.Ignored {
		ignored[user] = true
	}
	return ignored
}

// ignoredUsersType is the account data that lists the users a user ignores.
const ignoredUsersType = "m.ignored_user_list"

func filterEvent(roomID string, e *rooms.Event) filter.Event {
	return filter.Event{Type: e.PDU.Type(), Sender: e.Sender, RoomID: roomID, Content: e.PDU.Content()}
}

func (s *Service) summary(roomID, userID string) Summary {
	joined, invited, heroes := s.rooms.MemberSummary(roomID, userID, 5)
	return Summary{Heroes: heroes, JoinedCount: &joined, InvitedCount: &invited}
}

func accountDataEvent(evType string, content []byte) map[string]any {
	return map[string]any{"type": evType, "content": rawJSON(content)}
}
