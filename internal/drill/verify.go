package drill

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// historyPage is how many events one /messages call asks for while paging a whole history.
const historyPage = 500

// StageResult is one verification pass over every room on a set of nodes.
type StageResult struct {
	Stage string   `json:"stage"`
	Nodes []string `json:"nodes"`
	// Events is how many events the reference node holds over all rooms.
	Events int `json:"events"`
	// LostSends are acknowledged sends missing from a node's history.
	LostSends int `json:"lost_sends"`
	// DuplicateEvents are extra copies: an event id listed twice, or two events carrying one
	// sender's transaction id.
	DuplicateEvents int `json:"duplicate_events"`
	// ForkedRooms are rooms whose history differs between nodes.
	ForkedRooms []string `json:"forked_rooms,omitempty"`
	// MismatchedAcks are sends whose acknowledged event id holds another send's message.
	MismatchedAcks int `json:"mismatched_acks"`
	// CommittedUnacknowledged are drill messages stored although their client never got an
	// answer (abandoned when the load stopped, or committed as the answer was lost). Allowed.
	CommittedUnacknowledged int `json:"committed_unacknowledged"`
	// UnreadableRooms are rooms a node would not serve within the settle time.
	UnreadableRooms []string `json:"unreadable_rooms,omitempty"`
	Seconds         float64  `json:"seconds"`

	lost map[string]ack // by event id
}

// problems lists what the pass found wrong, naming at most maxLost of the lost sends; the
// drill passes only when no stage has any.
func (s *StageResult) problems(maxLost int) []string {
	var out []string
	add := func(cond bool, format string, args ...any) {
		if cond {
			out = append(out, fmt.Sprintf("%s: "+format, append([]any{s.Stage}, args...)...))
		}
	}
	lost := sortedAcks(s.lost)
	for _, a := range lost[:min(len(lost), maxLost)] {
		add(true, "lost %s (txn %s of %s, acknowledged by %s at %s)", a.EventID, a.Txn, a.Sender, a.Node,
			a.At.Format("15:04:05.000"))
	}
	add(len(lost) > maxLost, "%d more sends lost", len(lost)-maxLost)
	add(s.DuplicateEvents > 0, "%d duplicate events", s.DuplicateEvents)
	add(len(s.ForkedRooms) > 0, "histories differ between nodes in %v", s.ForkedRooms)
	add(s.MismatchedAcks > 0, "%d acknowledged event ids hold another send's message", s.MismatchedAcks)
	add(len(s.UnreadableRooms) > 0, "unreadable: %v", s.UnreadableRooms)
	return out
}

// verifier reads every room's full history from nodes and checks it against the acks.
type verifier struct {
	l      *load
	settle time.Duration // how long nodes may take to converge before a difference counts
}

// verify checks every room on every node. A room is re-read until it passes or settle runs
// out, since a node may still be applying the last events when the load stops.
func (v verifier) verify(ctx context.Context, stage string, nodes []*node, acks []ack) *StageResult {
	started := time.Now()
	res := &StageResult{Stage: stage, lost: map[string]ack{}}
	for _, n := range nodes {
		res.Nodes = append(res.Nodes, n.Name)
	}
	byRoom := map[string][]ack{}
	for _, a := range acks {
		byRoom[a.Room] = append(byRoom[a.Room], a)
	}
	deadline := time.Now().Add(v.settle)
	for _, p := range v.l.rooms {
		chk := v.checkRoomUntil(ctx, p, nodes, byRoom[p.ID], deadline)
		res.add(p, chk)
	}
	res.Seconds = time.Since(started).Seconds()
	return res
}

func (v verifier) checkRoomUntil(ctx context.Context, p *roomPlan, nodes []*node, acks []ack, deadline time.Time) roomCheck {
	for {
		chk := v.checkRoom(ctx, p, nodes, acks)
		if chk.clean() || time.Now().After(deadline) || !sleep(ctx, time.Second) {
			return chk
		}
		v.l.log.Debug("room not settled yet", "room", p.Name, "lost", len(chk.lost), "duplicates", chk.duplicates,
			"forked", chk.forked, "mismatched", chk.mismatched, "unreadable", chk.unreadable, "missing_by_node", chk.behind)
	}
}

// roomCheck is what one pass found in one room.
type roomCheck struct {
	events     int
	lost       []ack
	duplicates int
	forked     bool
	mismatched int
	unacked    int
	unreadable error
	behind     map[string]int // node -> acknowledged events it does not serve
}

func (c roomCheck) clean() bool {
	return len(c.lost) == 0 && c.duplicates == 0 && !c.forked && c.mismatched == 0 && c.unreadable == nil
}

func (v verifier) checkRoom(ctx context.Context, p *roomPlan, nodes []*node, acks []ack) roomCheck {
	a := api{hc: v.l.hc, token: v.l.users[p.Creator].sess.Token}
	var chk roomCheck
	var ref []clientEvent
	lost := map[string]ack{}
	for i, n := range nodes {
		hist, err := fetchHistory(ctx, a, n.URL(), p.ID)
		if err != nil {
			chk.unreadable = fmt.Errorf("%s on %s: %w", p.Name, n.Name, err)
			return chk
		}
		if i == 0 {
			ref = hist
			chk.events = len(hist)
		} else if !sameOrder(ref, hist) {
			chk.forked = true
		}
		dup, mismatched, unacked, missing := compare(hist, acks)
		if len(missing) > 0 {
			if chk.behind == nil {
				chk.behind = map[string]int{}
			}
			chk.behind[n.Name] = len(missing)
		}
		chk.duplicates = max(chk.duplicates, dup)
		chk.mismatched = max(chk.mismatched, mismatched)
		chk.unacked = max(chk.unacked, unacked)
		for _, m := range missing {
			lost[m.EventID] = m
		}
	}
	for _, m := range lost {
		chk.lost = append(chk.lost, m)
	}
	return chk
}

// compare checks one node's history of a room against the room's acknowledged sends.
func compare(hist []clientEvent, acks []ack) (duplicates, mismatched, unacked int, missing []ack) {
	byID := map[string]clientEvent{}
	markers := map[string]int{}
	for _, ev := range hist {
		if _, dup := byID[ev.EventID]; dup {
			duplicates++
		}
		byID[ev.EventID] = ev
		if ev.Content.Txn != "" {
			markers[ev.Sender+" "+ev.Content.Txn]++
		}
	}
	acked := map[string]bool{}
	for _, a := range acks {
		acked[a.marker()] = true
		ev, ok := byID[a.EventID]
		switch {
		case !ok:
			missing = append(missing, a)
		case ev.Sender != a.Sender || ev.Content.Txn != a.Txn:
			mismatched++
		}
	}
	for m, n := range markers {
		duplicates += n - 1
		if !acked[m] {
			unacked++
		}
	}
	return duplicates, mismatched, unacked, missing
}

func sameOrder(a, b []clientEvent) bool {
	return slices.EqualFunc(a, b, func(x, y clientEvent) bool { return x.EventID == y.EventID })
}

func (s *StageResult) add(p *roomPlan, chk roomCheck) {
	s.Events += chk.events
	for _, a := range chk.lost {
		s.lost[a.EventID] = a
	}
	s.LostSends = len(s.lost)
	s.DuplicateEvents += chk.duplicates
	s.MismatchedAcks += chk.mismatched
	s.CommittedUnacknowledged += chk.unacked
	if chk.forked {
		s.ForkedRooms = append(s.ForkedRooms, p.ID)
	}
	if chk.unreadable != nil {
		s.UnreadableRooms = append(s.UnreadableRooms, chk.unreadable.Error())
	}
}

// fetchHistory pages a room's history on one node back to its creation, oldest first.
func fetchHistory(ctx context.Context, a api, base, roomID string) ([]clientEvent, error) {
	var newestFirst []clientEvent
	from := ""
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		page, err := a.messages(rctx, base, roomID, from, historyPage)
		cancel()
		if err != nil {
			return nil, err
		}
		newestFirst = append(newestFirst, page.Chunk...)
		if page.End == "" || len(page.Chunk) == 0 {
			break
		}
		from = page.End
	}
	slices.Reverse(newestFirst)
	return newestFirst, nil
}
