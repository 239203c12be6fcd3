package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/firebreak/firebreak/internal/rooms"
)

// Page sizes of the directories.
const (
	defaultPublicRoomsLimit = 100
	maxPublicRoomsLimit     = 500
	defaultUserSearchLimit  = 10
	maxUserSearchLimit      = 50
)

// publicRoomsRequest is what GET (query) and POST (body) /publicRooms take.
type publicRoomsRequest struct {
	Limit  *int   `json:"limit"`
	Since  string `json:"since"`
	Filter struct {
		GenericSearchTerm string    `json:"generic_search_term"`
		RoomTypes         *[]string `json:"room_types"`
	} `json:"filter"`
}

// publicRooms answers GET and POST /publicRooms: the listed rooms, the largest first, in
// pages. Only this server's: with no federation, another server's list is empty.
func (srv *Server) publicRooms(r *http.Request, _ *session) (any, error) {
	var req publicRoomsRequest
	if r.Method == http.MethodPost {
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
	} else {
		q := r.URL.Query()
		req.Since = q.Get("since")
		if q.Has("limit") {
			n, err := queryInt(q.Get("limit"), 0)
			if err != nil {
				return nil, err
			}
			req.Limit = &n
		}
	}
	limit := defaultPublicRoomsLimit
	if req.Limit != nil {
		if *req.Limit < 0 {
			return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "limit must not be negative")
		}
		limit = min(*req.Limit, maxPublicRoomsLimit)
	}
	offset := 0
	if req.Since != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(req.Since, "o"))
		if err != nil || n < 0 || !strings.HasPrefix(req.Since, "o") {
			return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "since is not a token of this directory")
		}
		offset = n
	}
	var list []rooms.PublicRoom
	if server := r.URL.Query().Get("server"); server == "" || server == srv.Config.ServerName {
		var types []string // nil: any; a JSON null in the list reads as "", rooms of no type
		if req.Filter.RoomTypes != nil {
			types = *req.Filter.RoomTypes
		}
		var err error
		if list, err = srv.Rooms.PublicRooms(r.Context(), req.Filter.GenericSearchTerm, types); err != nil {
			return nil, err
		}
	}
	resp := map[string]any{"chunk": list[min(offset, len(list)):min(offset+limit, len(list))], "total_room_count_estimate": len(list)}
	if offset+limit < len(list) {
		resp["next_batch"] = "o" + strconv.Itoa(offset+limit)
	}
	if offset > 0 {
		resp["prev_batch"] = "o" + strconv.Itoa(max(offset-limit, 0))
	}
	return resp, nil
}

// getDirectoryVisibility answers GET /directory/list/room/{roomId}.
func (srv *Server) getDirectoryVisibility(r *http.Request, _ *session) (any, error) {
	roomID, err := srv.roomParam(r)
	if err != nil {
		return nil, err
	}
	visibility, err := srv.Rooms.DirectoryVisibility(r.Context(), roomID)
	if err != nil {
		return nil, err
	}
	return map[string]string{"visibility": visibility}, nil
}

// setDirectoryVisibility answers PUT /directory/list/room/{roomId}.
func (srv *Server) setDirectoryVisibility(r *http.Request, s *session) (any, error) {
	var req struct {
		Visibility string `json:"visibility"`
	}
	roomID, err := srv.bodyAndRoom(r, &req)
	if err != nil {
		return nil, err
	}
	if err := checkOptionalEnum("visibility", req.Visibility, "public", "private"); err != nil || req.Visibility == "" {
		return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "visibility must be public or private")
	}
	return struct{}{}, srv.Rooms.SetDirectoryVisibility(r.Context(), s.UserID, roomID, req.Visibility)
}

// searchUsers answers POST /user_directory/search.
func (srv *Server) searchUsers(r *http.Request, s *session) (any, error) {
	var req struct {
		SearchTerm *string `json:"search_term"`
		Limit      *int    `json:"limit"`
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.SearchTerm == nil {
		return nil, missingParam("search_term")
	}
	limit := defaultUserSearchLimit
	if req.Limit != nil {
		if *req.Limit < 1 {
			return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "limit must be positive")
		}
		limit = min(*req.Limit, maxUserSearchLimit)
	}
	results, limited, err := srv.Rooms.SearchUsers(r.Context(), s.UserID, *req.SearchTerm, limit)
	if err != nil {
		return nil, err
	}
	if results == nil {
		results = []rooms.DirectoryUser{}
	}
	return map[string]any{"results": results, "limited": limited}, nil
}
