package rooms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// checkPowerLevels refuses power levels the room version cannot parse. The auth rules would
// refuse them too, but as forbidden and in Go's words; this is the client's malformed request.
func checkPowerLevels(p Proto, version gomatrixserverlib.IRoomVersion) error {
	if p.Type != "m.room.power_levels" || len(p.Content) == 0 {
		return nil
	}
	var levels gomatrixserverlib.PowerLevelContent
	levels.Defaults()
	if err := version.ParsePowerLevels(p.Content, &levels); err != nil {
		return fmt.Errorf("%w: m.room.power_levels: every level must be an integer", ErrBadRequest)
	}
	return checkLevelNulls(p.Content)
}

// The levels of m.room.power_levels, alone and in maps, which the auth rules require to be
// integers where present.
var (
	levelFields = []string{"users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"}
	levelMaps   = []string{"users", "events", "notifications"}
)

// checkLevelNulls refuses what the room version's parser lets through as if absent: a null
// level, or a null map of them. A null in "users" would take its user to the default level,
// and its room's admin could be locked out by a client that meant to leave the level alone.
// Keys of "users" must be user ids, as the auth rules require. The content is read as that
// parser reads it (encoding/json: of a key given twice, the last), so a repeated key cannot
// show this check one value and the rules another.
func checkLevelNulls(content []byte) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(content, &top); err != nil {
		return fmt.Errorf("%w: m.room.power_levels: %v", ErrBadRequest, err)
	}
	for _, field := range levelFields {
		if level, ok := top[field]; ok && isNull(level) {
			return fmt.Errorf("%w: m.room.power_levels: %s must be an integer", ErrBadRequest, field)
		}
	}
	for _, field := range levelMaps {
		raw, ok := top[field]
		if !ok {
			continue
		}
		var levels map[string]json.RawMessage
		if isNull(raw) || json.Unmarshal(raw, &levels) != nil {
			return fmt.Errorf("%w: m.room.power_levels: %s must be an object of integers", ErrBadRequest, field)
		}
		for key, level := range levels {
			if isNull(level) {
				return fmt.Errorf("%w: m.room.power_levels: %s of %q must be an integer", ErrBadRequest, field, key)
			}
			if field == "users" && !isUserID(key) {
				return fmt.Errorf("%w: m.room.power_levels: %q in users is no user id", ErrBadRequest, key)
			}
		}
	}
	return nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

func isUserID(id string) bool {
	_, err := spec.NewUserID(id, true)
	return err == nil
}

// checkThreadRoot refuses a thread started off an event that relates to another itself (a
// thread's reply, an edit, a reaction): the spec's threads do not nest, and its servers
// refuse such a start. A root this node does not have is let through, as a root the client
// may know and the server not.
func (s *Service) checkThreadRoot(p Proto) error {
	relType, rootID := relationOf(p.Content)
	if relType != relThread {
		return nil
	}
	root, ok := s.model.Event(p.RoomID, rootID)
	if !ok {
		return nil
	}
	if rootRel, _ := storedRelationOf(root.PDU.Content()); rootRel != "" {
		return fmt.Errorf("%w: %s relates to another event", ErrNestedThread, root.PDU.EventID())
	}
	return nil
}

// checkCanonicalAlias makes sure an m.room.canonical_alias event only names valid aliases
// that point at its room, as the spec asks of servers.
func (s *Service) checkCanonicalAlias(ctx context.Context, p Proto) error {
	if p.Type != "m.room.canonical_alias" || p.StateKey == nil || *p.StateKey != "" {
		return nil
	}
	var c struct {
		Alias      string   `json:"alias"`
		AltAliases []string `json:"alt_aliases"`
	}
	if err := json.Unmarshal(p.Content, &c); err != nil {
		return fmt.Errorf("%w: m.room.canonical_alias: %v", ErrBadRequest, err)
	}
	aliases := c.AltAliases
	if c.Alias != "" {
		aliases = append(aliases, c.Alias)
	}
	for _, alias := range aliases {
		if !validAlias(alias) {
			return fmt.Errorf("%w: %q is not a room alias", ErrCanonicalAlias, alias)
		}
		roomID, err := s.ResolveAlias(ctx, alias)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if roomID != p.RoomID {
			return fmt.Errorf("%w: %s does not point to this room", ErrCanonicalAlias, alias)
		}
	}
	return nil
}

// validAlias reports whether alias has a room alias's form: #localpart:server, at most 255
// bytes of UTF-8, with neither white space nor NUL in it and a server name of the spec's
// grammar (so a ':' in the localpart leaves a server name that is not one).
func validAlias(alias string) bool {
	local, server, ok := strings.Cut(strings.TrimPrefix(alias, "#"), ":")
	if !ok || !strings.HasPrefix(alias, "#") || local == "" || len(alias) > 255 || !utf8.ValidString(alias) ||
		strings.ContainsFunc(alias, func(r rune) bool { return r == 0 || unicode.IsSpace(r) }) {
		return false
	}
	_, _, valid := spec.ParseAndValidateServerName(spec.ServerName(server))
	return valid
}
