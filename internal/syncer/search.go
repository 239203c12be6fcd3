package syncer

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/firebreak/firebreak/internal/filter"
	"github.com/firebreak/firebreak/internal/rooms"
)

// SearchRequest is the room_events category of one /search call.
type SearchRequest struct {
	Viewer       rooms.Viewer
	Term         string
	Keys         []string // content.body, content.name, content.topic; none: all three
	Filter       filter.RoomEventFilter
	OrderByRank  bool // else the newest first
	Context      *SearchContext
	IncludeState bool
	GroupBy      []string // room_id, sender
	NextBatch    string
}

// SearchContext asks for events around each result.
type SearchContext struct {
	Before, After  int
	IncludeProfile bool
}

// SearchResponse is the room_events category of a /search answer.
type SearchResponse struct {
	Count      int                                     `json:"count"`
	Highlights []string                                `json:"highlights"`
	Results    []SearchResult                          `json:"results"`
	NextBatch  string                                  `json:"next_batch,omitempty"`
	State      map[string][]rooms.ClientEvent          `json:"state,omitempty"`
	Groups     map[string]map[string]SearchGroupResult `json:"groups,omitempty"`
}

// SearchResult is one matching event.
type SearchResult struct {
	Rank    float64           `json:"rank"`
	Result  rooms.ClientEvent `json:"result"`
	Context *ResultContext    `json:"context,omitempty"`
}

// ResultContext is the events around a result.
type ResultContext struct {
	Start        string                    `json:"start"`
	End          string                    `json:"end"`
	EventsBefore []rooms.ClientEvent       `json:"events_before"`
	EventsAfter  []rooms.ClientEvent       `json:"events_after"`
	ProfileInfo  map[string]map[string]any `json:"profile_info,omitempty"`
}

// SearchGroupResult is one group of results.
type SearchGroupResult struct {
	Order     int      `json:"order"`
	Results   []string `json:"results"`
	NextBatch string   `json:"next_batch,omitempty"`
}

// searchKeys are the fields search reads, by the spec's names.
var searchKeys = []string{"content.body", "content.name", "content.topic"}

const defaultSearchLimit = 10

// found is a matching event and its rank.
type found struct {
	roomID string
	ev     rooms.Event
	rank   float64
	ts     int64 // origin_server_ts, kept apart from ev so that a token's stand-in (no PDU) has one
}

// compareFound orders results: by rank when asked, then the newest first, ties broken by room
// and position so that the order, and the pages cut from it, never change between requests.
func compareFound(byRank bool) func(a, b found) int {
	return func(a, b found) int {
		c := cmp.Compare(b.ts, a.ts)
		if byRank {
			c = cmp.Or(cmp.Compare(b.rank, a.rank), c)
		}
		return cmp.Or(c, strings.Compare(a.roomID, b.roomID), cmp.Compare(b.ev.Seq, a.ev.Seq))
	}
}

// searchToken names the last result of a page (its rank, time, room and position): the next
// page starts after it, wherever results that arrived since fall.
func searchToken(f found) string {
	return fmt.Sprintf("s%s_%d_%d_%s", strconv.FormatFloat(f.rank, 'g', -1, 64), f.ts, f.ev.Seq, f.roomID)
}

// parseSearchToken reads a searchToken into a stand-in result that orders where it did.
func parseSearchToken(token string) (found, bool) {
	rest, ok := strings.CutPrefix(token, "s")
	parts := strings.SplitN(rest, "_", 4)
	if !ok || len(parts) != 4 || parts[3] == "" {
		return found{}, false
	}
	rank, err1 := strconv.ParseFloat(parts[0], 64)
	ts, err2 := strconv.ParseInt(parts[1], 10, 64)
	seq, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || ts < 0 {
		return found{}, false
	}
	return found{roomID: parts[3], rank: rank, ev: rooms.Event{Seq: seq}, ts: ts}, true
}

// Search finds the events the user may read, in rooms they are in or were in (up to when
// they left, unless they forgot them), whose searched fields hold every word of the term
// (case-insensitively): the newest first, or those holding the words most often. An encrypted
// event never matches: the server cannot read it. Rooms are read from the read model, which
// holds their history, newest first, within a budget.
func (s *Service) Search(req SearchRequest) (*SearchResponse, error) {
	words := strings.Fields(strings.ToLower(req.Term))
	if len(words) == 0 {
		return nil, fmt.Errorf("%w: search_term must hold a word", ErrBadRequest)
	}
	keys := req.Keys
	if len(keys) == 0 {
		keys = searchKeys
	}
	for _, k := range keys {
		if !slices.Contains(searchKeys, k) {
			return nil, fmt.Errorf("%w: unknown search key %q", ErrBadRequest, k)
		}
	}
	var after *found
	if req.NextBatch != "" {
		f, ok := parseSearchToken(req.NextBatch)
		if !ok {
			return nil, fmt.Errorf("%w: next_batch is not a token of this search", ErrBadRequest)
		}
		after = &f
	}
	ignored := s.ignoredBy(req.Viewer.UserID)
	all := s.searchRooms(req, words, keys, ignored)
	order := compareFound(req.OrderByRank)
	slices.SortFunc(all, order)
	start := 0
	if after != nil {
		for start < len(all) && order(all[start], *after) <= 0 {
			start++
		}
	}
	limit := req.Filter.LimitOr(defaultSearchLimit, 100)
	if limit < 1 {
		limit = defaultSearchLimit
	}
	page := all[start:min(start+limit, len(all))]
	resp := &SearchResponse{Count: len(all), Highlights: words, Results: []SearchResult{}}
	if start+len(page) < len(all) {
		resp.NextBatch = searchToken(page[len(page)-1])
	}
	for _, f := range page {
		r := SearchResult{Rank: f.rank, Result: s.rooms.ClientEvent(f.roomID, f.ev, req.Viewer, true)}
		if req.Context != nil {
			r.Context = s.resultContext(f, req, ignored)
		}
		resp.Results = append(resp.Results, r)
	}
	s.addSearchExtras(resp, all, page, req)
	return resp, nil
}

// searchRooms collects the matches of every room the user may read. Each room is read newest
// first, in chunks, so the model's lock is held for one chunk at a time and a search that
// reaches its scan budget has the newest events; words are matched outside the lock.
func (s *Service) searchRooms(req SearchRequest, words, keys []string, ignored map[string]bool) []found {
	var out []found
	budget := maxSearchScan
	for roomID, membership := range s.rooms.Model().UserRooms(req.Viewer.UserID) {
		if membership != "join" && s.Forgotten(req.Viewer.UserID, roomID) {
			continue
		}
		keep := keepFor(req.Filter, roomID, ignored)
		upTo, err := s.rooms.ReadableUpTo(roomID, req.Viewer.UserID)
		for err == nil && upTo > 0 && budget > 0 {
			evs := s.rooms.Model().VisibleRange(roomID, req.Viewer.UserID, 0, upTo, false, min(searchChunk, budget),
				func(e *rooms.Event) bool { return e.RedactedBy == "" && keep(e) })
			if len(evs) == 0 {
				break
			}
			budget -= len(evs)
			for _, ev := range evs {
				if rank := matches(ev.PDU.Content(), keys, words); rank > 0 {
					out = append(out, found{roomID: roomID, ev: ev, rank: rank, ts: int64(ev.PDU.OriginServerTS())})
				}
			}
			upTo = evs[len(evs)-1].Seq - 1
		}
	}
	return out
}

// What one search reads at most: events in all (so one user in many large rooms cannot hold a
// node for long), and at a time, under the read model's lock.
const (
	maxSearchScan = 200_000
	searchChunk   = 2_000
)

// matches is how often the words occur in the event's searched fields, 0 unless every word
// occurs in one of them.
func matches(content []byte, keys, words []string) float64 {
	var text strings.Builder
	for _, k := range keys {
		text.WriteString(strings.ToLower(gjson.GetBytes(content, strings.TrimPrefix(k, "content.")).Str))
		text.WriteByte(0)
	}
	rank := 0
	for _, w := range words {
		n := strings.Count(text.String(), w)
		if n == 0 {
			return 0
		}
		rank += n
	}
	return float64(rank)
}

// resultContext is the events around a result that the search's filter keeps, as /context
// gives them.
func (s *Service) resultContext(f found, req SearchRequest, ignored map[string]bool) *ResultContext {
	model := s.rooms.Model()
	keep := keepFor(req.Filter, f.roomID, ignored)
	before := model.VisibleRange(f.roomID, req.Viewer.UserID, 0, f.ev.Seq-1, false, req.Context.Before, keep)
	after := model.VisibleRange(f.roomID, req.Viewer.UserID, f.ev.Seq, rooms.End, true, req.Context.After, keep)
	rc := &ResultContext{Start: roomToken(f.ev.Seq - 1).String(), End: roomToken(f.ev.Seq).String(),
		EventsBefore: s.rooms.ClientEvents(f.roomID, before, req.Viewer, true),
		EventsAfter:  s.rooms.ClientEvents(f.roomID, after, req.Viewer, true)}
	if len(before) > 0 {
		rc.Start = roomToken(before[len(before)-1].Seq - 1).String()
	}
	if len(after) > 0 {
		rc.End = roomToken(after[len(after)-1].Seq).String()
	}
	if req.Context.IncludeProfile {
		rc.ProfileInfo = map[string]map[string]any{}
		for _, ev := range slices.Concat(before, []rooms.Event{f.ev}, after) {
			if member, ok := model.MemberAt(f.roomID, ev.Sender, ev.Seq); ok {
				c := gjson.ParseBytes(member.PDU.Content())
				profile := map[string]any{}
				for _, field := range []string{"displayname", "avatar_url"} {
					if v := c.Get(field).Str; v != "" {
						profile[field] = v
					}
				}
				rc.ProfileInfo[ev.Sender] = profile
			}
		}
	}
	return rc
}

// addSearchExtras adds the current state of the page's rooms, and its groups, when asked. A
// group's order is where its first result stands in the whole result list; while pages
// follow, every group may have more, so each carries the next page's token.
func (s *Service) addSearchExtras(resp *SearchResponse, all, page []found, req SearchRequest) {
	if req.IncludeState {
		resp.State = map[string][]rooms.ClientEvent{}
		for _, f := range page {
			if _, done := resp.State[f.roomID]; !done {
				if state, err := s.rooms.VisibleState(f.roomID, req.Viewer.UserID, rooms.End); err == nil {
					resp.State[f.roomID] = s.rooms.ClientEvents(f.roomID, state, req.Viewer, true)
				}
			}
		}
	}
	for _, key := range req.GroupBy {
		groupOf := func(f found) string {
			if key == "sender" {
				return f.ev.Sender
			}
			return f.roomID
		}
		order := map[string]int{}
		for _, f := range all {
			if _, seen := order[groupOf(f)]; !seen {
				order[groupOf(f)] = len(order) + 1
			}
		}
		groups := map[string]SearchGroupResult{}
		for _, f := range page {
			g := groups[groupOf(f)]
			g.Order, g.NextBatch = order[groupOf(f)], resp.NextBatch
			g.Results = append(g.Results, f.ev.PDU.EventID())
			groups[groupOf(f)] = g
		}
		if resp.Groups == nil {
			resp.Groups = map[string]map[string]SearchGroupResult{}
		}
		resp.Groups[key] = groups
	}
}
