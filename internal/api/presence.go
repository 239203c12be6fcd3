package api

import (
	"net/http"
)

// Presence is not tracked (as in a Synapse with presence disabled): clients may still set their
// status, which is accepted and not stored, and everyone reads as offline. Answering instead of
// 404 keeps clients that set presence on every start from logging errors.

var presenceStates = []string{"online", "offline", "unavailable"}

func (srv *Server) setPresence(r *http.Request, s *session) (any, error) {
	if err := ownUser(r, s); err != nil {
		return nil, err
	}
	var body struct {
		Presence  string `json:"presence"`
		StatusMsg string `json:"status_msg"`
	}
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	if body.Presence == "" {
		return nil, missingParam("presence")
	}
	if err := checkOptionalEnum("presence", body.Presence, presenceStates...); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (srv *Server) getPresence(r *http.Request, _ *session) (any, error) {
	if !validUserID(r.PathValue("userId")) {
		return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "Not a user id")
	}
	if err := srv.knownUser(r.Context(), r.PathValue("userId")); err != nil {
		return nil, err // 404: no presence for a user who does not exist
	}
	return map[string]string{"presence": "offline"}, nil
}
