package api

import (
	"net/http"

	"github.com/firebreak/firebreak/internal/syncer"
)

// Page sizes of the relationship endpoints when the client names none, and the most a page
// holds whatever it asks (Synapse's defaults).
const (
	defaultRelationsLimit = 5
	maxRelationsLimit     = 1000
	defaultThreadsLimit   = 5
	maxThreadsLimit       = 100
)

// relations answers /relations/{eventId}[/{relType}[/{eventType}]]: the events related to one.
func (srv *Server) relations(r *http.Request, s *session) (any, error) {
	roomID, err := srv.readableRoom(r, s)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	limit, err := positiveLimit(q.Get("limit"), defaultRelationsLimit)
	if err != nil {
		return nil, err
	}
	for param, allowed := range map[string][]string{"dir": {"b", "f"}, "recurse": {"true", "false"}} {
		if err := checkOptionalEnum(param, q.Get(param), allowed...); err != nil {
			return nil, err
		}
	}
	return srv.Sync.Relations(r.Context(), syncer.RelationsRequest{
		Viewer: viewer(s), RoomID: roomID, EventID: r.PathValue("eventId"),
		RelType: r.PathValue("relType"), EventType: r.PathValue("eventType"),
		From: q.Get("from"), To: q.Get("to"), Backward: q.Get("dir") != "f",
		Limit: min(limit, maxRelationsLimit), Recurse: q.Get("recurse") == "true", ReportDepth: q.Has("recurse"),
	})
}

// threads answers /threads: the room's thread roots, the most recently active first.
func (srv *Server) threads(r *http.Request, s *session) (any, error) {
	roomID, err := srv.readableRoom(r, s)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	if err := checkOptionalEnum("include", q.Get("include"), "all", "participated"); err != nil {
		return nil, err
	}
	limit, err := positiveLimit(q.Get("limit"), defaultThreadsLimit)
	if err != nil {
		return nil, err
	}
	return srv.Sync.Threads(r.Context(), syncer.ThreadsRequest{
		Viewer: viewer(s), RoomID: roomID, From: q.Get("from"),
		Limit: min(limit, maxThreadsLimit), Participated: q.Get("include") == "participated",
	})
}

// positiveLimit reads a page size, def when absent. Zero is refused: an empty page would
// carry no token, which tells the client there is nothing to page through.
func positiveLimit(v string, def int) (int, error) {
	limit, err := queryInt(v, def)
	if err == nil && limit == 0 {
		err = errorf(http.StatusBadRequest, "M_INVALID_PARAM", "limit must be greater than zero")
	}
	return limit, err
}
