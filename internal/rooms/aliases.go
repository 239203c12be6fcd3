package rooms

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/firebreak/firebreak/internal/store"
)

// claimAlias maps an alias to a room; the first claim wins, on any node. The room's index of
// its aliases gets an entry after the claim, holding who made the alias: a node that dies in
// between leaves the alias working but unlisted, never a listed alias that points elsewhere
// (Aliases checks).
func (s *Service) claimAlias(ctx context.Context, alias, roomID, creator string) error {
	if !validAlias(alias) {
		return fmt.Errorf("%w: %q: an alias is #name:server, at most 255 bytes, without spaces or NUL", ErrInvalidAlias, alias)
	}
	_, err := s.st.Create(ctx, store.BucketAliases, store.Key(alias), []byte(roomID))
	if errors.Is(err, store.ErrExists) {
		switch _, _, rerr := s.resolveAlias(ctx, alias); {
		case errors.Is(rerr, ErrNotFound): // it was dangling: freed
			_, err = s.st.Create(ctx, store.BucketAliases, store.Key(alias), []byte(roomID))
		case rerr != nil:
			return rerr
		}
	}
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("%w: %s", ErrAliasInUse, alias)
	} else if err != nil {
		return unavailable(err)
	}
	if _, err := s.st.Put(ctx, store.BucketAliases, aliasIndexKey(roomID, alias), []byte(creator)); err != nil {
		s.releaseAlias(ctx, alias, roomID)
		return unavailable(err)
	}
	return nil
}

// releaseAlias removes an alias this call claimed, undoing a claim whose room was not made.
func (s *Service) releaseAlias(ctx context.Context, alias, roomID string) {
	if alias != "" {
		_ = s.releaseAliasAt(ctx, alias, roomID, 0)
	}
}

// releaseAliasAt removes an alias's index entry and then the alias, the alias only at
// revision rev (0: whatever it is at), so that a claim made since it was read, perhaps for
// another room, stays (ErrConflict). The index entry goes first: the other order would let a
// claim of the alias for the same room in between lose its fresh entry to the second delete.
func (s *Service) releaseAliasAt(ctx context.Context, alias, roomID string, rev uint64) error {
	if err := s.st.Delete(ctx, store.BucketAliases, aliasIndexKey(roomID, alias)); err != nil {
		return err
	}
	if rev == 0 {
		return s.st.Delete(ctx, store.BucketAliases, store.Key(alias))
	}
	return s.st.DeleteAt(ctx, store.BucketAliases, store.Key(alias), rev)
}

// aliasIndexKey is the entry listing alias among roomID's aliases. Its three parts keep it
// apart from the one-part keys of the aliases themselves.
func aliasIndexKey(roomID, alias string) string { return store.Key(aliasIndexPart, roomID, alias) }

const aliasIndexPart = "room"

// Aliases lists the aliases on this deployment that point at the room, for a member or, in a
// world-readable room, anyone.
func (s *Service) Aliases(ctx context.Context, userID, roomID string) ([]string, error) {
	if h, _ := s.model.history(roomID, userID); s.model.Membership(roomID, userID) != "join" && !h.worldReadable() {
		return nil, fmt.Errorf("%w: you are not in room %s", ErrForbidden, roomID)
	}
	keys, err := s.st.Keys(ctx, store.BucketAliases, aliasIndexPart, roomID)
	if err != nil {
		return nil, unavailable(err)
	}
	aliases := []string{}
	for _, k := range keys {
		parts, err := store.KeyParts(k)
		if err != nil || len(parts) != 3 {
			continue
		}
		if target, err := s.ResolveAlias(ctx, parts[2]); err == nil && target == roomID {
			aliases = append(aliases, parts[2])
		}
	}
	return aliases, nil
}

// ResolveAlias returns the room an alias points at.
func (s *Service) ResolveAlias(ctx context.Context, alias string) (string, error) {
	roomID, _, err := s.resolveAlias(ctx, alias)
	return roomID, err
}

// resolveAlias is ResolveAlias with the alias's revision, for a change that must not act on
// a newer claim of it. An alias left dangling is removed and not found.
func (s *Service) resolveAlias(ctx context.Context, alias string) (string, uint64, error) {
	b, rev, err := s.st.Get(ctx, store.BucketAliases, store.Key(alias))
	if err == nil && s.dangling(ctx, alias, string(b)) {
		if s.releaseAliasAt(ctx, alias, string(b), rev) == nil {
			s.log.Warn("removed an alias whose room was never created", "alias", alias, "room", string(b))
			err = store.ErrNotFound
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return "", 0, fmt.Errorf("%w: room alias %s not found", ErrNotFound, alias)
	} else if err != nil {
		return "", 0, unavailable(err)
	}
	return string(b), rev, nil
}

// dangling reports whether an alias names a room that does not exist, and was claimed long
// enough ago that no createRoom can still be making it: its node died between claiming the
// alias for the new room and storing the room's first events.
func (s *Service) dangling(ctx context.Context, alias, roomID string) bool {
	if _, ok := s.model.Info(roomID); ok {
		return false // the usual case
	}
	if s.CatchUpRoom(ctx, roomID) != nil {
		return false
	}
	if _, ok := s.model.Info(roomID); ok {
		return false
	}
	at, err := s.st.WrittenAt(ctx, store.BucketAliases, store.Key(alias))
	return err == nil && time.Since(at) > danglingAliasAge
}

// danglingAliasAge (a variable for tests) is far longer than a createRoom takes between
// claiming its alias and storing its first events, each write and catch-up retried for at
// most 20 s, and than two nodes' clocks differ (the age is the bucket leader's).
var danglingAliasAge = 10 * time.Minute

// SetAlias points a new alias of this server at a room the user is joined to.
func (s *Service) SetAlias(ctx context.Context, userID, alias, roomID string) error {
	if s.model.Membership(roomID, userID) != "join" {
		return fmt.Errorf("%w: you are not in room %s", ErrForbidden, roomID)
	}
	return s.claimAlias(ctx, alias, roomID, userID)
}

// DeleteAlias removes an alias; the user who made it may, as may a member of its room with
// power to change the canonical alias (the spec leaves the choice to the server; Synapse
// allows both).
func (s *Service) DeleteAlias(ctx context.Context, userID, alias string) error {
	roomID, rev, err := s.resolveAlias(ctx, alias)
	if err != nil {
		return err
	}
	if !s.canSendState(roomID, userID, "m.room.canonical_alias") && s.aliasCreator(ctx, roomID, alias) != userID {
		return fmt.Errorf("%w: not allowed to remove this alias", ErrForbidden)
	}
	err = s.releaseAliasAt(ctx, alias, roomID, rev)
	if errors.Is(err, store.ErrConflict) {
		// The alias checked above is gone; the one there now was claimed since.
		return fmt.Errorf("%w: room alias %s was deleted and claimed again meanwhile", ErrNotFound, alias)
	}
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// aliasCreator is the user who made the room's alias, "" when unknown (an alias claimed before
// its creator was recorded, or whose index entry was lost).
func (s *Service) aliasCreator(ctx context.Context, roomID, alias string) string {
	creator, _, err := s.st.Get(ctx, store.BucketAliases, aliasIndexKey(roomID, alias))
	if err != nil {
		return ""
	}
	return string(creator)
}

// canSendState reports whether the user's power level allows the state event type.
func (s *Service) canSendState(roomID, userID, evType string) bool {
	if s.model.Membership(roomID, userID) != "join" {
		return false
	}
	pl, err := s.powerLevels(roomID)
	switch {
	case err != nil:
		return false
	case pl == nil:
		return true
	}
	return pl.UserLevel(spec.SenderID(userID)) >= pl.EventLevel(evType, true)
}
