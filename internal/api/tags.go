package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/firebreak/firebreak/internal/accountdata"
)

// Room tags (favourites, low priority, the user's own) are the room account data m.tag, so
// sync delivers them as it does any account data.

const tagDataType = "m.tag"

// tagSet is the content of m.tag: each tag's own content (an optional "order").
type tagSet struct {
	Tags map[string]json.RawMessage `json:"tags"`
}

func (srv *Server) roomTags(r *http.Request, s *session) (tagSet, error) {
	if err := ownData(r, s, r.PathValue("roomId")); err != nil {
		return tagSet{}, err
	}
	raw, err := srv.AccountData.Get(s.UserID, r.PathValue("roomId"), tagDataType)
	if err != nil && !errors.Is(err, accountdata.ErrNotFound) {
		return tagSet{}, err
	}
	return parseTags(raw), nil
}

// parseTags reads m.tag content; none, or content that is not a tag set, is no tags.
func parseTags(raw []byte) tagSet {
	var set tagSet
	if raw == nil || json.Unmarshal(raw, &set) != nil || set.Tags == nil {
		set.Tags = map[string]json.RawMessage{}
	}
	return set
}

func (srv *Server) getTags(r *http.Request, s *session) (any, error) {
	return srv.roomTags(r, s)
}

func (srv *Server) putTag(r *http.Request, s *session) (any, error) {
	content, err := rawObject(r)
	if err != nil {
		return nil, err
	}
	var tag struct {
		Order *float64 `json:"order"`
	}
	if err := json.Unmarshal(content, &tag); err != nil || (tag.Order != nil && (*tag.Order < 0 || *tag.Order > 1)) {
		return nil, badJSON("order must be a number from 0 to 1")
	}
	return srv.changeTags(r, s, func(tags map[string]json.RawMessage) { tags[r.PathValue("tag")] = content })
}

func (srv *Server) deleteTag(r *http.Request, s *session) (any, error) {
	return srv.changeTags(r, s, func(tags map[string]json.RawMessage) { delete(tags, r.PathValue("tag")) })
}

// changeTags rewrites the room's m.tag with one change applied, as a compare-and-set so that
// tags changed at once (through any nodes) all stay.
func (srv *Server) changeTags(r *http.Request, s *session, change func(map[string]json.RawMessage)) (any, error) {
	if err := ownData(r, s, r.PathValue("roomId")); err != nil {
		return nil, err
	}
	err := srv.AccountData.Modify(r.Context(), s.UserID, r.PathValue("roomId"), tagDataType, func(old json.RawMessage) (json.RawMessage, error) {
		set := parseTags(old)
		change(set.Tags)
		return json.Marshal(set)
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
