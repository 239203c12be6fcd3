package rooms

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/tidwall/gjson"
)

// Event relationships: an event whose content's m.relates_to names a parent and a rel_type is
// that parent's child. Each event keeps its children as they are applied, so the relations
// endpoint, the thread list and the aggregations bundled with an event read them without
// scanning the room.

// The relationship types the server aggregates.
const (
	relThread    = "m.thread"
	relReplace   = "m.replace"
	relReference = "m.reference"
)

// MaxRelationDepth is how deep a recursive relations request follows children of children:
// the spec recommends at least three levels.
const MaxRelationDepth = 3

// relationOf reads the relationship an event's content declares: its rel_type and the parent's
// id, "" for none. An m.in_reply_to alone is a reply, not a relationship.
func relationOf(content []byte) (relType, parentID string) {
	rel := gjson.GetBytes(content, `m\.relates_to`)
	return rel.Get("rel_type").Str, rel.Get("event_id").Str
}

// storedRelationOf is relationOf for a stored event, whose content is canonical JSON: its
// keys are never escaped, so most events, which relate to none, are told by a byte search
// instead of a read of their content, which costs an allocation.
func storedRelationOf(content []byte) (relType, parentID string) {
	if !bytes.Contains(content, []byte(`"m.relates_to"`)) {
		return "", ""
	}
	return relationOf(content)
}

// relate records what ev relates to, as it is applied: its thread, its relationship type, and
// itself among its parent's children (when the room has the parent).
func (r *room) relate(ev *Event) {
	relType, parentID := storedRelationOf(ev.PDU.Content())
	var parent *Event
	if parentID != "" { // most events relate to nothing: no probe of a large map for ""
		parent = r.byID[parentID]
	}
	ev.Thread = threadOf(parent, relType)
	ev.RelType = relType
	if parent == nil || relType == "" {
		return
	}
	if relType == relThread && !parent.threadRoot {
		parent.threadRoot = true
		r.threadRoots = append(r.threadRoots, parent)
	}
	parent.children = append(parent.children, ev)
}

// viewRoom is the room with the user's view of its history, read-locked until done is
// called; nil for a room the model does not have. The view is taken first, so every event it
// does not cover is newer than its head, and sees refuses those.
func (m *Model) viewRoom(roomID, userID string) (r *room, h history, done func()) {
	h, _ = m.history(roomID, userID)
	m.mu.RLock()
	return m.rooms[roomID], h, m.mu.RUnlock
}

// sees reports whether the user may see the event at seq, one within the view's head.
func (h history) sees(seq uint64) bool { return seq <= h.head && h.canSee(seq) }

// RelativesQuery says which of an event's relatives to list.
type RelativesQuery struct {
	Depth    int               // 1: its children; more: their children too, down so many levels
	Keep     func(*Event) bool // nil keeps every one
	Limit    int               // at most so many
	Backward bool              // the newest first
}

// Relatives lists the events related to the parent that the user may see and the query keeps,
// in stream order (the newest first when backward), and whether the limit left some out.
// Redacted events are left out: redaction removes the relationship from their content.
func (m *Model) Relatives(roomID, parentID, userID string, q RelativesQuery) (evs []Event, more bool) {
	r, h, done := m.viewRoom(roomID, userID)
	defer done()
	if r == nil || r.byID[parentID] == nil {
		return nil, false
	}
	related := func(c *Event) bool { return c.RedactedBy == "" && h.sees(c.Seq) }
	keep := func(c *Event) bool { return related(c) && (q.Keep == nil || q.Keep(c)) }
	var found []*Event
	if q.Depth <= 1 {
		// Children are in stream order: read from the end asked for, only as far as the page.
		found = firstKept(r.byID[parentID].children, q.Backward, q.Limit+1, keep)
	} else {
		found = descendants(r.byID[parentID], q.Depth, related, keep)
		if q.Backward {
			slices.Reverse(found)
		}
	}
	more = len(found) > q.Limit
	for _, c := range found[:min(q.Limit, len(found))] {
		evs = append(evs, *c)
	}
	return evs, more
}

// firstKept is up to n of the events keep accepts, from the start or, backward, the end.
func firstKept(events []*Event, backward bool, n int, keep func(*Event) bool) []*Event {
	var out []*Event
	for i := range events {
		if len(out) == n {
			break
		}
		if backward {
			i = len(events) - 1 - i
		}
		if keep(events[i]) {
			out = append(out, events[i])
		}
	}
	return out
}

// descendants is every event below parent, down depth levels through the children follow
// accepts, that keep accepts, in stream order.
func descendants(parent *Event, depth int, follow, keep func(*Event) bool) []*Event {
	var out []*Event
	level := []*Event{parent}
	for range depth {
		var next []*Event
		for _, p := range level {
			for _, c := range p.children {
				if !follow(c) {
					continue
				}
				next = append(next, c)
				if keep(c) {
					out = append(out, c)
				}
			}
		}
		level = next
	}
	slices.SortFunc(out, func(a, b *Event) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// aggregate is what the server sums up of an event's children for one user: the spec's
// bundled aggregations, before they are rendered.
type aggregate struct {
	threadCount  int
	threadLatest *Event // the newest reply in the thread the event is the root of
	participated bool   // the user sent the root or a reply in its thread
	edit         *Event // the newest valid replacement
	references   []string
}

func (a aggregate) empty() bool {
	return a.threadCount == 0 && a.edit == nil && len(a.references) == 0
}

// aggregate sums up the children of ev that the user may see. A redacted event bundles no
// replacement: its edits no longer apply.
func (m *Model) aggregate(roomID string, ev Event, userID string) aggregate {
	_, h, done := m.viewRoom(roomID, userID)
	defer done()
	a := aggregate{participated: ev.Sender == userID}
	for _, c := range ev.children {
		// Annotations (reactions), often most of an event's children, are not aggregated:
		// the type is checked first, as it costs least.
		if (c.RelType != relThread && c.RelType != relReplace && c.RelType != relReference) || c.RedactedBy != "" {
			continue
		}
		if c.RelType == relThread && c.Sender == userID {
			a.participated = true
		}
		if !h.sees(c.Seq) {
			continue
		}
		switch c.RelType {
		case relThread:
			a.threadCount++
			a.threadLatest = copyOf(c)
		case relReplace:
			if ev.RedactedBy == "" && replaces(c, &ev) && (a.edit == nil || newerEdit(c, a.edit)) {
				a.edit = copyOf(c)
			}
		case relReference:
			a.references = append(a.references, c.PDU.EventID())
		}
	}
	return a
}

func copyOf(ev *Event) *Event {
	c := *ev
	return &c
}

// replaces applies the spec's validity rules of a replacement: the same sender and type as the
// original, neither a state event, the original not itself a replacement, and new content
// (which an encrypted replacement carries inside its ciphertext).
func replaces(edit, original *Event) bool {
	return edit.Sender == original.Sender && edit.PDU.Type() == original.PDU.Type() &&
		!edit.IsState() && !original.IsState() && original.RelType != relReplace &&
		(edit.PDU.Type() == "m.room.encrypted" || gjson.GetBytes(edit.PDU.Content(), `m\.new_content`).IsObject())
}

// newerEdit orders replacements as the spec does: by origin_server_ts, then by event id.
func newerEdit(a, b *Event) bool {
	if ta, tb := a.PDU.OriginServerTS(), b.PDU.OriginServerTS(); ta != tb {
		return ta > tb
	}
	return a.PDU.EventID() > b.PDU.EventID()
}

// ThreadRoot is a thread's root event with the position of the thread's newest reply.
type ThreadRoot struct {
	Root   Event
	Latest uint64
}

// ThreadRoots lists the room's threads whose root and some reply the user may see, the
// thread with the newest reply first; with participated, only those the user took part in.
func (m *Model) ThreadRoots(roomID, userID string, participated bool) []ThreadRoot {
	r, h, done := m.viewRoom(roomID, userID)
	defer done()
	if r == nil {
		return nil
	}
	var out []ThreadRoot
	for _, root := range r.threadRoots {
		if !h.sees(root.Seq) {
			continue
		}
		took := root.Sender == userID
		var latest uint64
		for _, c := range root.children {
			if c.RelType != relThread || c.RedactedBy != "" {
				continue
			}
			took = took || c.Sender == userID
			if h.sees(c.Seq) {
				latest = c.Seq
			}
		}
		if latest > 0 && (took || !participated) {
			out = append(out, ThreadRoot{Root: *root, Latest: latest})
		}
	}
	slices.SortFunc(out, func(a, b ThreadRoot) int { return cmp.Compare(b.Latest, a.Latest) })
	return out
}
