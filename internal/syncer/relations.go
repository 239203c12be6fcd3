package syncer

import (
	"context"
	"slices"

	"github.com/firebreak/firebreak/internal/rooms"
)

// RelationsRequest is one /relations call: the children of an event, filtered by
// relationship and event type, paged like /messages (the same tokens serve both).
type RelationsRequest struct {
	Viewer             rooms.Viewer
	RoomID, EventID    string
	RelType, EventType string // "" for any
	From, To           string
	Backward           bool
	Limit              int
	Recurse            bool
	ReportDepth        bool // the client named recurse, true or false: the answer says how deep it went
}

// RelationsResponse is the /relations response body.
type RelationsResponse struct {
	Chunk          []rooms.ClientEvent `json:"chunk"`
	NextBatch      string              `json:"next_batch,omitempty"`
	PrevBatch      string              `json:"prev_batch,omitempty"`
	RecursionDepth *int                `json:"recursion_depth,omitempty"` // only when the client named recurse
}

// Relations pages through the events related to one the user may see: 404 for a parent they
// may not, as for one that does not exist.
func (s *Service) Relations(ctx context.Context, req RelationsRequest) (*RelationsResponse, error) {
	userID := req.Viewer.UserID
	if _, err := s.rooms.VisibleEvent(ctx, req.RoomID, userID, req.EventID); err != nil {
		return nil, err
	}
	after, upTo, err := s.pageBounds(ctx, req.RoomID, req.From, req.To, req.Backward)
	if err != nil {
		return nil, err
	}
	depth := 1
	if req.Recurse {
		depth = rooms.MaxRelationDepth
	}
	ignored := s.ignoredBy(userID)
	page, more := s.rooms.Model().Relatives(req.RoomID, req.EventID, userID, rooms.RelativesQuery{
		Depth: depth, Limit: req.Limit, Backward: req.Backward,
		Keep: func(ev *rooms.Event) bool {
			return ev.Seq > after && ev.Seq <= upTo && (req.RelType == "" || ev.RelType == req.RelType) &&
				(req.EventType == "" || ev.PDU.Type() == req.EventType) && !ignored[ev.Sender]
		}})
	resp := &RelationsResponse{Chunk: s.rooms.ClientEvents(req.RoomID, page, req.Viewer, true), PrevBatch: req.From}
	if more && len(page) > 0 {
		resp.NextBatch = nextPageToken(page[len(page)-1].Seq, req.Backward).String()
	}
	if req.ReportDepth {
		resp.RecursionDepth = &depth
	}
	return resp, nil
}

// ThreadsRequest is one /threads call.
type ThreadsRequest struct {
	Viewer       rooms.Viewer
	RoomID       string
	From         string
	Limit        int
	Participated bool // only threads the user took part in
}

// ThreadsResponse is the /threads response body.
type ThreadsResponse struct {
	Chunk     []rooms.ClientEvent `json:"chunk"`
	NextBatch string              `json:"next_batch,omitempty"`
}

// Threads pages through the room's thread roots, the thread with the newest reply first. A
// page's token is the position of its last thread's newest reply, so a thread that moves on
// while the client pages shows up again at the top, not twice on one walk down.
func (s *Service) Threads(ctx context.Context, req ThreadsRequest) (*ThreadsResponse, error) {
	_, from, err := s.pageBounds(ctx, req.RoomID, req.From, "", true)
	if err != nil {
		return nil, err
	}
	roots := s.rooms.Model().ThreadRoots(req.RoomID, req.Viewer.UserID, req.Participated)
	start, _ := slices.BinarySearchFunc(roots, from, func(t rooms.ThreadRoot, pos uint64) int {
		// Newest first: the threads at or before pos start where Latest <= pos.
		if t.Latest > pos {
			return -1
		}
		return 1
	})
	roots = roots[start:]
	page := roots[:min(req.Limit, len(roots))]
	resp := &ThreadsResponse{Chunk: make([]rooms.ClientEvent, len(page))}
	for i, t := range page {
		resp.Chunk[i] = s.rooms.ClientEvent(req.RoomID, t.Root, req.Viewer, true)
	}
	if len(roots) > len(page) && len(page) > 0 {
		resp.NextBatch = nextPageToken(page[len(page)-1].Latest, true).String()
	}
	return resp, nil
}
