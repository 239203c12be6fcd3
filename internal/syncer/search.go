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
	Order   int      `json:"order"`
	Results []string `json:"results"`
}

// searchKeys are the fields search reads, by the spec's names.
var searchKeys = []string{"content.body", "content.name", "content.topic"}

const defaultSearchLimit = 10

// found is a matching event and its rank.
type found struct {
	roomID string
	ev     rooms.Event
	rank   float64
}

// Search finds the events the user may read, in rooms they are in or were in (up to when
// they left), whose searched fields hold every word of the term (case-insensitively): the
// newest first, or those holding the words most often. An encrypted event never matches: the
// server cannot read it. Every room's history is read from the read model, which holds it all.
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
	offset := 0
	if req.NextBatch != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(req.NextBatch, "s"))
		if err != nil || n < 0 || !strings.HasPrefix(req.NextBatch, "s") {
			return nil, fmt.Errorf("%w: next_batch is not a token of this search", ErrBadRequest)
		}
		offset = n
	}
	all := s.searchRooms(req, words, keys)
	slices.SortFunc(all, func(a, b found) int {
		byTime := cmp.Compare(b.ev.PDU.OriginServerTS(), a.ev.PDU.OriginServerTS())
		if req.OrderByRank {
			return cmp.Or(cmp.Compare(b.rank, a.rank), byTime)
		}
		return byTime
	})
	limit := req.Filter.LimitOr(defaultSearchLimit, 100)
	page := all[min(offset, len(all)):min(offset+limit, len(all))]
	resp := &SearchResponse{Count: len(all), Highlights: words, Results: []SearchResult{}}
	if offset+limit < len(all) {
		resp.NextBatch = "s" + strconv.Itoa(offset+limit)
	}
	for _, f := range page {
		r := SearchResult{Rank: f.rank, Result: s.rooms.ClientEvent(f.roomID, f.ev, req.Viewer, true)}
		if req.Context != nil {
			r.Context = s.resultContext(f, req)
		}
		resp.Results = append(resp.Results, r)
	}
	s.addSearchExtras(resp, page, req)
	return resp, nil
}

// searchRooms collects the matches of every room the user may read.
func (s *Service) searchRooms(req SearchRequest, words, keys []string) []found {
	var out []found
	ignored := s.ignoredBy(req.Viewer.UserID)
	for roomID, membership := range s.rooms.Model().UserRooms(req.Viewer.UserID) {
		if membership != "join" && s.Forgotten(req.Viewer.UserID, roomID) {
			continue
		}
		keep := keepFor(req.Filter, roomID, ignored)
		upTo, err := s.rooms.ReadableUpTo(roomID, req.Viewer.UserID)
		if err != nil {
			continue
		}
		evs := s.rooms.Model().VisibleRange(roomID, req.Viewer.UserID, 0, upTo, true, maxSearchScan, func(e *rooms.Event) bool {
			return e.RedactedBy == "" && keep(e)
		})
		for _, ev := range evs {
			if rank := matches(ev.PDU.Content(), keys, words); rank > 0 {
				out = append(out, found{roomID, ev, rank})
			}
		}
	}
	return out
}

// maxSearchScan bounds the events read of one room.
const maxSearchScan = 1_000_000

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

// resultContext is the events around a result, as /context gives them.
func (s *Service) resultContext(f found, req SearchRequest) *ResultContext {
	model := s.rooms.Model()
	before := model.VisibleRange(f.roomID, req.Viewer.UserID, 0, f.ev.Seq-1, false, req.Context.Before, nil)
	after := model.VisibleRange(f.roomID, req.Viewer.UserID, f.ev.Seq, rooms.End, true, req.Context.After, nil)
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
				rc.ProfileInfo[ev.Sender] = map[string]any{"displayname": c.Get("displayname").Str, "avatar_url": c.Get("avatar_url").Str}
			}
		}
	}
	return rc
}

// addSearchExtras adds the current state of the page's rooms, and its groups, when asked.
func (s *Service) addSearchExtras(resp *SearchResponse, page []found, req SearchRequest) {
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
		if resp.Groups == nil {
			resp.Groups = map[string]map[string]SearchGroupResult{}
		}
		groups := map[string]SearchGroupResult{}
		for _, f := range page {
			value := f.roomID
			if key == "sender" {
				value = f.ev.Sender
			}
			g, ok := groups[value]
			if !ok {
				g.Order = len(groups) + 1
			}
			g.Results = append(g.Results, f.ev.PDU.EventID())
			groups[value] = g
		}
		resp.Groups[key] = groups
	}
}
