package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// relatedTo is the content of a message related to parent by relType, with extra keys.
func relatedTo(body string, relType event.RelationType, parent id.EventID, extra map[string]any) map[string]any {
	c := map[string]any{"msgtype": "m.text", "body": body,
		"m.relates_to": map[string]any{"rel_type": relType, "event_id": parent}}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// editOf is the content of a replacement of parent with new text.
func editOf(parent id.EventID, text string) map[string]any {
	return relatedTo("* "+text, event.RelReplace, parent, map[string]any{
		"m.new_content": map[string]any{"msgtype": "m.text", "body": text}})
}

func (u *user) send(t testing.TB, room id.RoomID, evType event.Type, content map[string]any) id.EventID {
	t.Helper()
	resp, err := u.SendMessageEvent(testCtx(t), room, evType, content)
	mustOK(t, err, "send "+evType.Type)
	return resp.EventID
}

// getEvent is GET /rooms/{room}/event/{id} as u.
func (u *user) getEvent(t testing.TB, room id.RoomID, evt id.EventID) *event.Event {
	t.Helper()
	ev, err := u.GetEvent(testCtx(t), room, evt)
	mustOK(t, err, "get event "+evt.String())
	return ev
}

// relationIDs pages /relations to the end as u and returns every event id in the order
// served, with the number of pages.
func relationIDs(t *testing.T, u *user, room id.RoomID, parent id.EventID, req mautrix.ReqGetRelations) (ids []id.EventID, pages int) {
	t.Helper()
	for {
		resp, err := u.GetRelations(testCtx(t), room, parent, &req)
		mustOK(t, err, "get relations")
		pages++
		ids = append(ids, eventIDs(resp.Chunk)...)
		if resp.NextBatch == "" || pages > 50 {
			return ids, pages
		}
		req.From = resp.NextBatch
	}
}

func expectIDs(t *testing.T, what string, got, want []id.EventID) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

// testRelations builds a thread, edits, a reaction and a reference on one message and reads
// them through /relations, the bundled aggregations of every read path, and /threads.
func testRelations(t *testing.T, srv *server) {
	alice, bob, carol := registerUser(t, srv, "alice"), registerUser(t, srv, "bob"), registerUser(t, srv, "carol")
	room := sharedRoom(t, alice, bob, carol)
	root := alice.sendText(t, room, "root")
	reply1 := bob.send(t, room, event.EventMessage, relatedTo("reply 1", event.RelThread, root, nil))
	edit1 := alice.send(t, room, event.EventMessage, editOf(root, "root, edited"))
	reaction := bob.send(t, room, event.EventReaction, map[string]any{
		"m.relates_to": map[string]any{"rel_type": event.RelAnnotation, "event_id": root, "key": "👍"}})
	reply2 := alice.send(t, room, event.EventMessage, relatedTo("reply 2", event.RelThread, root, nil))
	// Not valid edits: another sender's, and one without new content. Neither is bundled.
	bobEdit := bob.send(t, room, event.EventMessage, editOf(root, "bob's edit"))
	noNewContent := alice.send(t, room, event.EventMessage, relatedTo("* no new content", event.RelReplace, root, nil))
	edit2 := alice.send(t, room, event.EventMessage, editOf(root, "root, edited twice"))
	ref := bob.send(t, room, event.EventMessage, relatedTo("see above", event.RelReference, root, nil))
	reply2Edit := alice.send(t, room, event.EventMessage, editOf(reply2, "reply 2, edited"))
	// A rich reply alone is no relationship.
	alice.send(t, room, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "a reply",
		"m.relates_to": map[string]any{"m.in_reply_to": map[string]any{"event_id": root}}})
	children := []id.EventID{reply1, edit1, reaction, reply2, bobEdit, noNewContent, edit2, ref}

	t.Run("RelationsNewestFirst", func(t *testing.T) {
		got, _ := relationIDs(t, carol, room, root, mautrix.ReqGetRelations{Limit: 100})
		expectIDs(t, "all children", got, reversed(children))
		got, _ = relationIDs(t, carol, room, root, mautrix.ReqGetRelations{RelationType: event.RelThread})
		expectIDs(t, "m.thread", got, []id.EventID{reply2, reply1})
		got, _ = relationIDs(t, carol, room, root, mautrix.ReqGetRelations{RelationType: event.RelAnnotation, EventType: event.EventReaction})
		expectIDs(t, "m.annotation of m.reaction", got, []id.EventID{reaction})
		got, _ = relationIDs(t, carol, room, root, mautrix.ReqGetRelations{RelationType: event.RelAnnotation, EventType: event.EventMessage})
		expectIDs(t, "m.annotation of m.room.message", got, nil)
		got, _ = relationIDs(t, carol, room, reply1, mautrix.ReqGetRelations{})
		expectIDs(t, "children of a childless event", got, nil)
	})
	t.Run("RelationsPaged", func(t *testing.T) {
		got, pages := relationIDs(t, carol, room, root, mautrix.ReqGetRelations{Limit: 3})
		expectIDs(t, "backward in pages of 3", got, reversed(children))
		if pages != 3 {
			t.Errorf("8 children came in %d pages of 3, want 3", pages)
		}
		got, _ = relationIDs(t, carol, room, root, mautrix.ReqGetRelations{Limit: 3, Dir: mautrix.DirectionForward})
		expectIDs(t, "forward in pages of 3", got, children)
		first, err := carol.GetRelations(testCtx(t), room, root, &mautrix.ReqGetRelations{Limit: 3})
		mustOK(t, err, "first page")
		second, err := carol.GetRelations(testCtx(t), room, root, &mautrix.ReqGetRelations{Limit: 2, From: first.NextBatch})
		mustOK(t, err, "second page")
		expectIDs(t, "second page", eventIDs(second.Chunk), []id.EventID{bobEdit, reply2})
		if second.PrevBatch != first.NextBatch {
			t.Errorf("second page's prev_batch %q, want its from %q", second.PrevBatch, first.NextBatch)
		}
	})
	t.Run("RelationsRecurse", func(t *testing.T) {
		resp, err := carol.GetRelations(testCtx(t), room, root, &mautrix.ReqGetRelations{Limit: 100, Recurse: true})
		mustOK(t, err, "recursive relations")
		expectIDs(t, "children and grandchildren", eventIDs(resp.Chunk), append([]id.EventID{reply2Edit}, reversed(children)...))
		if resp.RecursionDepth < 3 {
			t.Errorf("recursion_depth %d, want at least 3", resp.RecursionDepth)
		}
		plain := rawRequest(t, "GET", relationsURL(srv, room, root, ""), carol.AccessToken, nil)
		plain.expectOK(t)
		if _, ok := plain.Body["recursion_depth"]; ok {
			t.Errorf("recursion_depth present without recurse: %s", plain.Raw)
		}
		// The filter applies to every level, and recursion goes through children it leaves
		// out: reply 2's edit is found through reply 2, a thread reply.
		edits, _ := relationIDs(t, carol, room, root, mautrix.ReqGetRelations{RelationType: event.RelReplace, Recurse: true, Limit: 100})
		expectIDs(t, "edits, recursively", edits, []id.EventID{reply2Edit, edit2, noNewContent, bobEdit, edit1})
		// Named, even as false, the parameter makes the field mandatory.
		flat := rawRequest(t, "GET", relationsURL(srv, room, root, "?recurse=false"), carol.AccessToken, nil)
		flat.expectOK(t)
		if flat.Body["recursion_depth"] != 1.0 {
			t.Errorf("recurse=false: recursion_depth %v, want 1", flat.Body["recursion_depth"])
		}
	})
	t.Run("BundledAggregations", func(t *testing.T) {
		for _, u := range []*user{alice, bob, carol} {
			checkRootBundle(t, u.getEvent(t, room, root), u != carol, reply2, reply2Edit, edit2, ref)
		}
		// The same bundle in /messages, /context and sync's timeline.
		msgs, _ := roomMessages(t, alice, room, "", "", mautrix.DirectionBackward, nil, 100)
		checkRootBundle(t, findEvent(t, msgs, root), true, reply2, reply2Edit, edit2, ref)
		ctx, err := alice.Context(testCtx(t), room, reply1, nil, 2) // one event each side
		mustOK(t, err, "context")
		checkRootBundle(t, findEvent(t, ctx.EventsBefore, root), true, reply2, reply2Edit, edit2, ref)
		sync, err := alice.FullSyncRequest(testCtx(t), mautrix.ReqSync{FilterID: `{"room":{"timeline":{"limit":50}}}`})
		mustOK(t, err, "sync")
		checkRootBundle(t, findEvent(t, roomTimeline(sync, room), root), true, reply2, reply2Edit, edit2, ref)
	})
	t.Run("RedactionsLeaveTheBundle", func(t *testing.T) {
		for _, evt := range []id.EventID{edit2, reply2, ref} {
			_, err := alice.RedactEvent(testCtx(t), room, evt, mautrix.ReqRedact{})
			mustOK(t, err, "redact "+evt.String())
		}
		rel := carol.getEvent(t, room, root).Unsigned.Relations
		if edit := rel.GetLatestEdit(); edit == nil || edit.ID != edit1 {
			t.Errorf("after the latest edit's redaction m.replace is %s, want %s", idOf(edit), edit1)
		}
		if th := rel.GetThread(); th.GetCount() != 1 || th.GetLatestEvent() == nil || th.LatestEvent.ID != reply1 {
			t.Errorf("after a reply's redaction m.thread is %+v, want 1 reply, the latest %s", th, reply1)
		}
		if rel.GetReferences() != nil {
			t.Errorf("a redacted reference is still bundled: %+v", rel.References)
		}
		got, _ := relationIDs(t, carol, room, root, mautrix.ReqGetRelations{Limit: 100})
		expectIDs(t, "children left", got, []id.EventID{noNewContent, bobEdit, reaction, edit1, reply1})
		_, err := alice.RedactEvent(testCtx(t), room, root, mautrix.ReqRedact{})
		mustOK(t, err, "redact the root")
		rel = carol.getEvent(t, room, root).Unsigned.Relations
		if rel.GetLatestEdit() != nil || rel.GetThread().GetCount() != 1 {
			t.Errorf("a redacted original bundles %+v, want its thread and no edit", rel)
		}
	})
	t.Run("Errors", func(t *testing.T) {
		outsider := registerUser(t, srv, "outsider")
		cases := []struct {
			name, url string
			u         *user
			status    int
			errcode   string
		}{
			{"unknown event", relationsURL(srv, room, "$nope", ""), carol, http.StatusNotFound, "M_NOT_FOUND"},
			{"not in the room", relationsURL(srv, room, reply1, ""), outsider, http.StatusForbidden, "M_FORBIDDEN"},
			{"bad dir", relationsURL(srv, room, reply1, "?dir=x"), carol, http.StatusBadRequest, "M_INVALID_PARAM"},
			{"bad recurse", relationsURL(srv, room, reply1, "?recurse=yes"), carol, http.StatusBadRequest, "M_INVALID_PARAM"},
			{"bad limit", relationsURL(srv, room, reply1, "?limit=-1"), carol, http.StatusBadRequest, "M_INVALID_PARAM"},
			{"limit 0", relationsURL(srv, room, reply1, "?limit=0"), carol, http.StatusBadRequest, "M_INVALID_PARAM"},
			{"bad token", relationsURL(srv, room, reply1, "?from=zz"), carol, http.StatusBadRequest, "M_INVALID_PARAM"},
			{"threads: bad include", threadsURL(srv, room, "?include=mine"), carol, http.StatusBadRequest, "M_INVALID_PARAM"},
			{"threads: limit 0", threadsURL(srv, room, "?limit=0"), carol, http.StatusBadRequest, "M_INVALID_PARAM"},
			{"threads: not in the room", threadsURL(srv, room, ""), outsider, http.StatusForbidden, "M_FORBIDDEN"},
			{"threads: no token", threadsURL(srv, room, ""), nil, http.StatusUnauthorized, "M_MISSING_TOKEN"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				token := ""
				if c.u != nil {
					token = c.u.AccessToken
				}
				rawRequest(t, "GET", c.url, token, nil).expectError(t, c.status, c.errcode)
			})
		}
	})
}

// checkRootBundle checks the root's aggregations: a thread whose latest reply carries its
// own edit, the newest valid edit, and one reference.
func checkRootBundle(t *testing.T, root *event.Event, participated bool, latest, latestEdit, edit, ref id.EventID) {
	t.Helper()
	if root == nil {
		t.Fatal("the root is not among the events served")
	}
	rel := root.Unsigned.Relations
	th := rel.GetThread()
	switch {
	case th == nil:
		t.Fatalf("no m.thread bundled: %+v", root.Unsigned)
	case th.Count != 2 || th.CurrentUserParticipated != participated:
		t.Errorf("m.thread count %d, participated %v; want 2, %v", th.Count, th.CurrentUserParticipated, participated)
	case th.LatestEvent == nil || th.LatestEvent.ID != latest:
		t.Errorf("m.thread latest_event %s, want %s", idOf(th.LatestEvent), latest)
	case th.LatestEvent.Unsigned.Relations.GetLatestEdit() == nil || th.LatestEvent.Unsigned.Relations.LatestEdit.ID != latestEdit:
		t.Errorf("the latest reply's own edit is not bundled with it: %+v", th.LatestEvent.Unsigned)
	}
	if e := rel.GetLatestEdit(); e == nil || e.ID != edit {
		t.Errorf("m.replace %s, want %s", idOf(e), edit)
	}
	expectIDs(t, "m.reference", rel.GetReferences().GetEventIDs(), []id.EventID{ref})
}

// idOf is an event's id, "none" for no event.
func idOf(e *event.Event) string {
	if e == nil {
		return "none"
	}
	return e.ID.String()
}

func findEvent(t *testing.T, evs []*event.Event, evt id.EventID) *event.Event {
	t.Helper()
	for _, e := range evs {
		if e.ID == evt {
			return e
		}
	}
	return nil
}

func relationsURL(srv *server, room id.RoomID, evt id.EventID, rest string) string {
	return clientURL(srv, "v1/rooms/"+url.PathEscape(room.String())+"/relations/"+url.PathEscape(evt.String())+rest)
}

func threadsURL(srv *server, room id.RoomID, query string) string {
	return clientURL(srv, "v1/rooms/"+url.PathEscape(room.String())+"/threads"+query)
}

// threadsPage is one /threads answer.
type threadsPage struct {
	Chunk     []*event.Event `json:"chunk"`
	NextBatch string         `json:"next_batch"`
}

// threadRoots pages /threads to the end as u.
func threadRoots(t *testing.T, srv *server, u *user, room id.RoomID, query string) []id.EventID {
	t.Helper()
	var out []id.EventID
	for from := ""; ; {
		q := query
		if from != "" {
			q += "&from=" + url.QueryEscape(from)
		}
		resp := rawRequest(t, "GET", threadsURL(srv, room, "?"+q), u.AccessToken, nil)
		resp.expectOK(t)
		var page threadsPage
		if err := json.Unmarshal(resp.Raw, &page); err != nil {
			t.Fatal(err)
		}
		for _, root := range page.Chunk {
			if root.Unsigned.Relations.GetThread() == nil {
				t.Errorf("thread root %s has no m.thread bundle", root.ID)
			}
		}
		out = append(out, eventIDs(page.Chunk)...)
		if from = page.NextBatch; from == "" || len(out) > 50 {
			return out
		}
	}
}

// testThreads: threads come the most recently active first, paged, and "participated" keeps
// the user's own; a user who may not see a thread's root neither lists the thread nor reads
// its relations.
func testThreads(t *testing.T, srv *server) {
	alice, bob, dave := registerUser(t, srv, "alice"), registerUser(t, srv, "bob"), registerUser(t, srv, "dave")
	room := roomWithVisibility(t, alice, event.HistoryVisibilityJoined)
	alice.invite(t, room, bob)
	bob.join(t, room.String(), room)
	root := alice.sendText(t, room, "alice's thread")
	bob.send(t, room, event.EventMessage, relatedTo("bob's answer", event.RelThread, root, nil))
	bobsRoot := bob.sendText(t, room, "bob's thread")
	bob.send(t, room, event.EventMessage, relatedTo("bob's reply", event.RelThread, bobsRoot, nil))
	quiet := alice.sendText(t, room, "no thread here")
	expectIDs(t, "all threads", threadRoots(t, srv, alice, room, "limit=10"), []id.EventID{bobsRoot, root})
	expectIDs(t, "one a page", threadRoots(t, srv, alice, room, "limit=1"), []id.EventID{bobsRoot, root})
	expectIDs(t, "alice's threads", threadRoots(t, srv, alice, room, "include=participated"), []id.EventID{root})
	// A new reply moves alice's thread to the top.
	bob.send(t, room, event.EventMessage, relatedTo("back to it", event.RelThread, root, nil))
	expectIDs(t, "after a new reply", threadRoots(t, srv, alice, room, "limit=10"), []id.EventID{root, bobsRoot})
	if slices.Contains(threadRoots(t, srv, alice, room, ""), quiet) {
		t.Errorf("a message without replies is listed as a thread")
	}
	alice.invite(t, room, dave)
	dave.join(t, room.String(), room)
	late := bob.send(t, room, event.EventMessage, relatedTo("after dave came", event.RelThread, root, nil))
	expectIDs(t, "threads dave may see", threadRoots(t, srv, dave, room, ""), nil)
	rawRequest(t, "GET", relationsURL(srv, room, root, ""), dave.AccessToken, nil).expectError(t, http.StatusNotFound, "M_NOT_FOUND")
	if ev := bob.getEvent(t, room, root); ev.Unsigned.Relations.GetThread().GetLatestEvent().ID != late {
		t.Errorf("the thread's latest reply is not the newest: %+v", ev.Unsigned.Relations)
	}
}
