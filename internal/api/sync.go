package api

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/firebreak/firebreak/internal/accounts"
	"github.com/firebreak/firebreak/internal/filter"
	"github.com/firebreak/firebreak/internal/push"
	"github.com/firebreak/firebreak/internal/syncer"
)

func (srv *Server) sync(r *http.Request, s *session) (any, error) {
	q := r.URL.Query()
	f, err := srv.resolveFilter(r, s, q.Get("filter"))
	if err != nil {
		return nil, err
	}
	timeout, err := queryInt(q.Get("timeout"), 0)
	if err != nil {
		return nil, err
	}
	if err := checkOptionalEnum("set_presence", q.Get("set_presence"), presenceStates...); err != nil {
		return nil, err
	}
	if err := checkOptionalEnum("full_state", q.Get("full_state"), "true", "false"); err != nil {
		return nil, err
	}
	started := time.Now()
	resp, err := srv.Sync.Sync(r.Context(), syncer.Request{
		UserID: s.UserID, DeviceID: s.DeviceID, Since: q.Get("since"),
		Timeout: millis(int64(timeout)), FullState: q.Get("full_state") == "true", Filter: f,
		Ended: func() bool { return sessionEnded(srv.tokenRevoked(r.Context(), s)) },
	})
	if err == nil && time.Since(started) > time.Second {
		// A long poll may outlive its token (a logout elsewhere): what arrived since must not
		// reach a device that is logged out. A quick answer is as fresh as the first check.
		if err := srv.tokenRevoked(r.Context(), s); err != nil {
			return nil, err
		}
	}
	return resp, err
}

// sessionEnded says whether a token check found the session gone. A check that failed for
// another reason (the node cut off from the cluster cannot read the tokens) ends nothing: a
// 401 would log the device out for good.
func sessionEnded(err error) bool { return errors.Is(err, accounts.ErrUnknownToken) }

// tokenRevoked checks again the access token a request was authenticated with.
func (srv *Server) tokenRevoked(ctx context.Context, s *session) error {
	_, _, err := srv.Accounts.Authenticate(ctx, s.Token)
	return err
}

// checkOptionalEnum refuses a query parameter given with a value the spec does not allow.
func checkOptionalEnum(param, value string, allowed ...string) error {
	if value == "" || slices.Contains(allowed, value) {
		return nil
	}
	return errorf(http.StatusBadRequest, "M_INVALID_PARAM", "%s must be one of %q", param, allowed)
}

// resolveFilter accepts a stored filter's id or an inline filter's JSON.
func (srv *Server) resolveFilter(r *http.Request, s *session, param string) (filter.Filter, error) {
	if param == "" {
		return filter.Filter{}, nil
	}
	if strings.HasPrefix(strings.TrimSpace(param), "{") {
		return filter.Parse([]byte(param))
	}
	return srv.filters.LoadParsed(r.Context(), srv.Store, s.UserID, param)
}

func queryInt(v string, def int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "%q is not a non-negative integer", v)
	}
	return n, nil
}

// millis is a client's count of milliseconds as a duration; counts too large for one (a
// client asking to wait "forever") become the longest, instead of wrapping round to negative.
func millis(ms int64) time.Duration {
	if ms > math.MaxInt64/int64(time.Millisecond) {
		return math.MaxInt64
	}
	return time.Duration(ms) * time.Millisecond
}

// ownData refuses requests about another user's private data, and about a room that the path
// does not name by a room id (the room need not exist, or be one the user is in); roomID is
// empty for global data.
func ownData(r *http.Request, s *session, roomID string) error {
	if err := ownUser(r, s); err != nil {
		return err
	}
	if roomID != "" && !validRoomID(roomID) {
		return errorf(http.StatusBadRequest, "M_INVALID_PARAM", "%q is not a room id", roomID)
	}
	return nil
}

// ownUser refuses requests about another user's private data.
func ownUser(r *http.Request, s *session) error {
	if r.PathValue("userId") != s.UserID {
		return forbidden("You may only access your own data")
	}
	return nil
}

func (srv *Server) createFilter(r *http.Request, s *session) (any, error) {
	if err := ownUser(r, s); err != nil {
		return nil, err
	}
	raw, err := rawObject(r)
	if err != nil {
		return nil, err
	}
	if _, err := filter.Parse(raw); err != nil {
		return nil, err
	}
	id, err := filter.Save(r.Context(), srv.Store, s.UserID, raw)
	if err != nil {
		return nil, err
	}
	return map[string]string{"filter_id": id}, nil
}

func (srv *Server) getFilter(r *http.Request, s *session) (any, error) {
	if err := ownUser(r, s); err != nil {
		return nil, err
	}
	raw, err := filter.Load(r.Context(), srv.Store, s.UserID, r.PathValue("filterId"))
	if err != nil {
		return nil, err
	}
	return json.RawMessage(raw), nil
}

func (srv *Server) getAccountData(r *http.Request, s *session) (any, error) {
	return srv.readAccountData(r, s, "")
}

func (srv *Server) getRoomAccountData(r *http.Request, s *session) (any, error) {
	return srv.readAccountData(r, s, r.PathValue("roomId"))
}

func (srv *Server) readAccountData(r *http.Request, s *session, roomID string) (any, error) {
	if err := ownData(r, s, roomID); err != nil {
		return nil, err
	}
	if roomID == "" && r.PathValue("type") == push.AccountDataType {
		return srv.pushRules(r, s) // the defaults too, for a user who never changed a rule
	}
	content, err := srv.AccountData.Get(s.UserID, roomID, r.PathValue("type"))
	if err != nil {
		return nil, err
	}
	return content, nil
}

func (srv *Server) setAccountData(r *http.Request, s *session) (any, error) {
	return srv.writeAccountData(r, s, "")
}

func (srv *Server) setRoomAccountData(r *http.Request, s *session) (any, error) {
	return srv.writeAccountData(r, s, r.PathValue("roomId"))
}

// serverManagedData are account data types clients may not write directly.
var serverManagedData = map[string]bool{"m.fully_read": true, "m.push_rules": true}

func (srv *Server) writeAccountData(r *http.Request, s *session, roomID string) (any, error) {
	if err := ownData(r, s, roomID); err != nil {
		return nil, err
	}
	content, err := rawObject(r)
	if err != nil {
		return nil, err
	}
	evType := r.PathValue("type")
	if serverManagedData[evType] || strings.HasPrefix(evType, "im.firebreak.") {
		return nil, errorf(http.StatusMethodNotAllowed, "M_BAD_JSON", "Cannot set %s through this API", evType)
	}
	if err := srv.AccountData.Set(r.Context(), s.UserID, roomID, evType, content); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (srv *Server) messages(r *http.Request, s *session) (any, error) {
	roomID, limit, f, err := srv.historyParams(r, s)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir != "b" && dir != "f" {
		return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "dir must be 'b' or 'f'")
	}
	return srv.Sync.Messages(r.Context(), syncer.MessagesRequest{
		Viewer: viewer(s), RoomID: roomID, From: q.Get("from"), To: q.Get("to"),
		Backward: dir == "b", Limit: min(limit, 1000), Filter: f,
	})
}

// historyParams reads what /messages and /context share: a readable room, a limit and an
// inline room event filter.
func (srv *Server) historyParams(r *http.Request, s *session) (string, int, filter.RoomEventFilter, error) {
	var f filter.RoomEventFilter
	roomID, err := srv.readableRoom(r, s)
	if err != nil {
		return "", 0, f, err
	}
	limit, err := queryInt(r.URL.Query().Get("limit"), 10)
	if err != nil {
		return "", 0, f, err
	}
	f, err = inlineRoomFilter(r.URL.Query().Get("filter"))
	return roomID, limit, f, err
}

func inlineRoomFilter(param string) (filter.RoomEventFilter, error) {
	if param == "" {
		return filter.RoomEventFilter{}, nil
	}
	return filter.ParseRoomEvents([]byte(param)) // refused: 400 M_BAD_JSON (toMatrixError)
}

func (srv *Server) eventContext(r *http.Request, s *session) (any, error) {
	roomID, limit, f, err := srv.historyParams(r, s)
	if err != nil {
		return nil, err
	}
	return srv.Sync.Context(r.Context(), viewer(s), roomID, r.PathValue("eventId"), min(limit, 100), f)
}

// search answers POST /search?next_batch=: the room_events category, the only one the spec
// defines.
func (srv *Server) search(r *http.Request, s *session) (any, error) {
	var req struct {
		Categories *struct {
			RoomEvents *struct {
				SearchTerm   *string         `json:"search_term"`
				Keys         []string        `json:"keys"`
				Filter       json.RawMessage `json:"filter"`
				OrderBy      string          `json:"order_by"`
				EventContext *struct {
					Before         *int `json:"before_limit"`
					After          *int `json:"after_limit"`
					IncludeProfile bool `json:"include_profile"`
				} `json:"event_context"`
				IncludeState bool `json:"include_state"`
				Groupings    struct {
					GroupBy []struct {
						Key string `json:"key"`
					} `json:"group_by"`
				} `json:"groupings"`
			} `json:"room_events"`
		} `json:"search_categories"`
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Categories == nil {
		return nil, missingParam("search_categories")
	}
	re := req.Categories.RoomEvents
	if re == nil {
		return map[string]any{"search_categories": map[string]any{}}, nil
	}
	if re.SearchTerm == nil {
		return nil, missingParam("search_term")
	}
	if err := checkOptionalEnum("order_by", re.OrderBy, "recent", "rank"); err != nil {
		return nil, err
	}
	if string(re.Filter) == "null" {
		re.Filter = nil
	}
	f, err := inlineRoomFilter(string(re.Filter))
	if err != nil {
		return nil, err
	}
	sr := syncer.SearchRequest{Viewer: viewer(s), Term: *re.SearchTerm, Keys: re.Keys, Filter: f,
		OrderByRank: re.OrderBy != "recent", IncludeState: re.IncludeState, NextBatch: r.URL.Query().Get("next_batch")}
	if c := re.EventContext; c != nil {
		sr.Context = &syncer.SearchContext{Before: min(ptrOr(c.Before, 5), 100), After: min(ptrOr(c.After, 5), 100), IncludeProfile: c.IncludeProfile}
		if sr.Context.Before < 0 || sr.Context.After < 0 {
			return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "event_context limits must not be negative")
		}
	}
	for _, g := range re.Groupings.GroupBy {
		if err := checkOptionalEnum("group_by key", g.Key, "room_id", "sender"); err != nil || g.Key == "" {
			return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "group_by keys must be room_id or sender")
		}
		sr.GroupBy = append(sr.GroupBy, g.Key)
	}
	resp, err := srv.Sync.Search(sr)
	if err != nil {
		return nil, err
	}
	return map[string]any{"search_categories": map[string]any{"room_events": resp}}, nil
}

func ptrOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}
