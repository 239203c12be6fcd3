package api

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/firebreak/firebreak/internal/rooms"
)

// Page sizes of the directories.
const (
	maxPublicRoomsLimit    = 500
	defaultUserSearchLimit = 10
	maxUserSearchLimit     = 50
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
// pages. Only this server's: with no federation, another server's list is empty. A limit of
// 0 or none is the whole list, as in Synapse.
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
	limit := maxPublicRoomsLimit
	if req.Limit != nil {
		if *req.Limit < 0 {
			return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "limit must not be negative")
		}
		if *req.Limit > 0 {
			limit = min(*req.Limit, maxPublicRoomsLimit)
		}
	}
	list := []rooms.PublicRoom{}
	if server := r.URL.Query().Get("server"); server == "" || server == srv.Config.ServerName {
		var types []string // none: any; a JSON null in the list reads as "", rooms of no type
		if req.Filter.RoomTypes != nil {
			types = *req.Filter.RoomTypes
		}
		var err error
		if list, err = srv.Rooms.PublicRooms(r.Context(), req.Filter.GenericSearchTerm, types); err != nil {
			return nil, err
		}
	}
	return directoryPage(list, req.Since, limit)
}

// directoryPage is one page of the directory. Its tokens name the room it ends or starts at
// (by member count and id, the list's order), not a position: the counts move while a client
// pages, and a position would then skip or repeat rooms.
func directoryPage(list []rooms.PublicRoom, since string, limit int) (any, error) {
	start, end := 0, min(limit, len(list))
	if since != "" {
		backward, at, err := parseDirectoryToken(since)
		if err != nil {
			return nil, err
		}
		// The first room after the token's (going forward), or the first at or after it.
		i, _ := slices.BinarySearchFunc(list, at, rooms.ComparePublicRooms)
		if !backward {
			for i < len(list) && rooms.ComparePublicRooms(list[i], at) <= 0 {
				i++
			}
			start, end = i, min(i+limit, len(list))
		} else {
			start, end = max(i-limit, 0), i
		}
	}
	resp := map[string]any{"chunk": list[start:end], "total_room_count_estimate": len(list)}
	if end < len(list) && end > 0 {
		resp["next_batch"] = directoryToken("n", list[end-1])
	}
	if start > 0 && start < end {
		resp["prev_batch"] = directoryToken("p", list[start])
	}
	return resp, nil
}

func directoryToken(direction string, room rooms.PublicRoom) string {
	return direction + strconv.Itoa(room.NumJoinedMembers) + "_" + room.RoomID
}

// parseDirectoryToken reads a directoryToken: whether it pages backward, and the room it names.
func parseDirectoryToken(token string) (backward bool, at rooms.PublicRoom, err error) {
	bad := errorf(http.StatusBadRequest, "M_INVALID_PARAM", "since is not a token of this directory")
	if len(token) < 2 || (token[0] != 'n' && token[0] != 'p') {
		return false, at, bad
	}
	count, roomID, ok := strings.Cut(token[1:], "_")
	n, convErr := strconv.Atoi(count)
	if !ok || convErr != nil || n < 0 || roomID == "" {
		return false, at, bad
	}
	return token[0] == 'p', rooms.PublicRoom{NumJoinedMembers: n, RoomID: roomID}, nil
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
	if req.Visibility == "" {
		req.Visibility = "public" // the spec's default
	}
	if err := checkOptionalEnum("visibility", req.Visibility, "public", "private"); err != nil {
		return nil, err
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
	userIDs, limited, err := srv.Rooms.SearchUsers(r.Context(), s.UserID, *req.SearchTerm, limit)
	if err != nil {
		return nil, err
	}
	// Shown with their profiles, not whatever name one room knows them by.
	results := make([]rooms.DirectoryUser, len(userIDs))
	for i, userID := range userIDs {
		results[i] = rooms.DirectoryUser{UserID: userID}
		if acct, err := srv.Accounts.Account(r.Context(), userID); err == nil {
			results[i].DisplayName, results[i].AvatarURL = acct.DisplayName, acct.AvatarURL
		}
	}
	return map[string]any{"results": results, "limited": limited}, nil
}
