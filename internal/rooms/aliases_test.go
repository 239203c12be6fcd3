package rooms

import (
	"errors"
	"testing"

	"github.com/firebreak/firebreak/internal/store"
)

// TestDanglingAlias: a node that dies between claiming a new room's alias and storing the
// room leaves an alias naming no room. While a createRoom could still be making the room it
// stands; after that it is removed when next used, so the alias can be claimed again, also
// when the node died before recording who made it (nobody could delete it then).
func TestDanglingAlias(t *testing.T) {
	s := newService(t)
	ctx := t.Context()
	const claimed, unrecorded = "#claimed:test", "#unrecorded:test"
	if err := s.claimAlias(ctx, claimed, "!never:test", alice); err != nil {
		t.Fatal(err)
	}
	if _, err := s.st.Create(ctx, store.BucketAliases, store.Key(unrecorded), []byte("!never2:test")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ResolveAlias(ctx, claimed); err != nil || got != "!never:test" {
		t.Errorf("an alias claimed a moment ago resolves to %q, %v; want its room, perhaps being created", got, err)
	}
	grace := danglingAliasAge
	defer func() { danglingAliasAge = grace }()
	danglingAliasAge = 0 // as if the claims were minutes old
	if _, err := s.ResolveAlias(ctx, claimed); !errors.Is(err, ErrNotFound) {
		t.Errorf("a dangling alias resolves: %v", err)
	}
	if err := s.DeleteAlias(ctx, alice, unrecorded); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting a dangling alias with no creator recorded: %v, want not found", err)
	}
	danglingAliasAge = grace // rooms being created now keep their aliases
	for _, alias := range []string{claimed, unrecorded} {
		roomID := createRoom(t, s, CreateRequest{AliasLocalpart: alias[1 : len(alias)-len(":test")]})
		if got, err := s.ResolveAlias(ctx, alias); err != nil || got != roomID {
			t.Errorf("%s claimed again resolves to %q, %v; want %s", alias, got, err, roomID)
		}
	}
}
