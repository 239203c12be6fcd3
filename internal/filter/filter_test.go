package filter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/firebreak/firebreak/internal/store"
	"github.com/firebreak/firebreak/internal/store/storetest"
)

func ptr[T any](v T) *T { return &v }

func TestParse(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		wantErr bool
		check   func(t *testing.T, f Filter)
	}{
		{name: "empty object", in: `{}`},
		{name: "null", in: `null`},
		{name: "full", in: `{
			"event_fields": ["type", "content.body"],
			"event_format": "client",
			"presence": {"limit": 3, "types": ["m.presence"]},
			"account_data": {"not_types": ["m.secret*"]},
			"room": {
				"rooms": ["!a:x"], "not_rooms": ["!b:x"], "include_leave": true,
				"timeline": {"limit": 20, "senders": ["@a:x"], "contains_url": true, "lazy_load_members": true},
				"state": {"limit": 0, "lazy_load_members": true, "include_redundant_members": true},
				"ephemeral": {"types": ["m.receipt"]},
				"account_data": {"limit": 1}
			}}`,
			check: func(t *testing.T, f Filter) {
				if f.EventFormat != "client" || len(f.EventFields) != 2 {
					t.Errorf("top level = %+v", f)
				}
				if f.Presence.Limit == nil || *f.Presence.Limit != 3 || f.Presence.Types == nil || (*f.Presence.Types)[0] != "m.presence" {
					t.Errorf("presence = %+v", f.Presence)
				}
				if len(f.AccountData.NotTypes) != 1 || f.AccountData.NotTypes[0] != "m.secret*" {
					t.Errorf("account_data = %+v", f.AccountData)
				}
				r := f.Room
				if r.Rooms == nil || (*r.Rooms)[0] != "!a:x" || r.NotRooms[0] != "!b:x" || !r.IncludeLeave {
					t.Errorf("room = %+v", r)
				}
				tl := r.Timeline
				if tl.Limit == nil || *tl.Limit != 20 || tl.Senders == nil || (*tl.Senders)[0] != "@a:x" ||
					tl.ContainsURL == nil || !*tl.ContainsURL || !tl.LazyLoadMembers {
					t.Errorf("timeline = %+v", tl)
				}
				if r.State.Limit == nil || *r.State.Limit != 0 || !r.State.LazyLoadMembers || !r.State.IncludeRedundantMembers {
					t.Errorf("state = %+v", r.State)
				}
				if r.Ephemeral.Types == nil || (*r.Ephemeral.Types)[0] != "m.receipt" {
					t.Errorf("ephemeral = %+v", r.Ephemeral)
				}
				if r.AccountData.Limit == nil || *r.AccountData.Limit != 1 {
					t.Errorf("room account_data = %+v", r.AccountData)
				}
			}},
		{name: "federation format", in: `{"event_format":"federation"}`,
			check: func(t *testing.T, f Filter) {
				if f.EventFormat != "federation" {
					t.Errorf("event_format = %q", f.EventFormat)
				}
			}},
		{name: "empty types list is kept, not nil", in: `{"room":{"timeline":{"types":[]}}}`,
			check: func(t *testing.T, f Filter) {
				if f.Room.Timeline.Types == nil || len(*f.Room.Timeline.Types) != 0 {
					t.Errorf("types = %v, want a non-nil empty list", f.Room.Timeline.Types)
				}
			}},
		{name: "absent limit is nil", in: `{"room":{"timeline":{}}}`,
			check: func(t *testing.T, f Filter) {
				if f.Room.Timeline.Limit != nil {
					t.Errorf("limit = %v, want nil", *f.Room.Timeline.Limit)
				}
			}},
		{name: "negative presence limit", in: `{"presence":{"limit":-1}}`, wantErr: true},
		{name: "negative account_data limit", in: `{"account_data":{"limit":-5}}`, wantErr: true},
		{name: "negative timeline limit", in: `{"room":{"timeline":{"limit":-1}}}`, wantErr: true},
		{name: "negative state limit", in: `{"room":{"state":{"limit":-100}}}`, wantErr: true},
		{name: "negative ephemeral limit", in: `{"room":{"ephemeral":{"limit":-1}}}`, wantErr: true},
		{name: "bad event_format", in: `{"event_format":"xml"}`, wantErr: true},
		{name: "event_format wrong case", in: `{"event_format":"Client"}`, wantErr: true},
		{name: "event_format number", in: `{"event_format":1}`, wantErr: true},
		{name: "limit as string", in: `{"room":{"timeline":{"limit":"10"}}}`, wantErr: true},
		{name: "limit as float", in: `{"room":{"timeline":{"limit":1.5}}}`, wantErr: true},
		{name: "types not a list", in: `{"room":{"timeline":{"types":"m.room.message"}}}`, wantErr: true},
		{name: "types of numbers", in: `{"presence":{"types":[1,2]}}`, wantErr: true},
		{name: "rooms not a list", in: `{"room":{"rooms":"!a:x"}}`, wantErr: true},
		{name: "contains_url not a bool", in: `{"room":{"timeline":{"contains_url":"yes"}}}`, wantErr: true},
		{name: "room not an object", in: `{"room":[]}`, wantErr: true},
		{name: "top level array", in: `[]`, wantErr: true},
		{name: "top level string", in: `"filter"`, wantErr: true},
		{name: "truncated", in: `{"room":`, wantErr: true},
		{name: "empty input", in: ``, wantErr: true},
		{name: "trailing garbage", in: `{}x`, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse([]byte(tc.in))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Parse(%s) = %+v, want an error", tc.in, f)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Parse(%s) error %v does not wrap ErrInvalid", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%s): %v", tc.in, err)
			}
			if tc.check != nil {
				tc.check(t, f)
			}
		})
	}
}

// TestParseNegativeRoomAccountDataLimit: Parse refuses a negative limit in room.account_data
// too, which it once left unchecked.
func TestParseNegativeRoomAccountDataLimit(t *testing.T) {
	if _, err := Parse([]byte(`{"room":{"account_data":{"limit":-3}}}`)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Parse(room.account_data.limit -3) error = %v, want ErrInvalid", err)
	}
}

func TestParseRoomEvents(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr bool
	}{
		{`{}`, false},
		{`{"limit":5,"types":["m.room.message"],"lazy_load_members":true}`, false},
		{`{"limit":0}`, false},
		{`{"limit":-1}`, true},
		{`{"types":5}`, true},
		{`not json`, true},
	} {
		f, err := ParseRoomEvents([]byte(tc.in))
		if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("ParseRoomEvents(%s) = %+v, %v; want an error: %v", tc.in, f, err, tc.wantErr)
		}
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"m.room.message", "m.room.message", true},
		{"m.room.message", "m.room.messages", false},
		{"m.room.message", "m.room.messag", false},
		{"*", "", true},
		{"*", "anything", true},
		{"m.*", "m.room.message", true},
		{"m.*", "m.", true},
		{"m.*", "m", false},
		{"*.message", "m.room.message", true},
		{"*.message", "m.room.messages", false},
		{"m.*.message", "m.room.message", true},
		{"m.*.message", "m.message", false},
		{"m.*.*", "m.a.b", true},
		{"m.*.*", "m.a", false},
		{"a*a", "a", false},
		{"a*a", "aa", true},
		{"a*a", "aba", true},
		{"ab*ba", "aba", false},
		{"ab*ba", "abba", true},
		{"*a*ab", "aab", true},
		{"*b*b", "b", false},
		{"**", "x", true},
		{"m.room.*", "M.ROOM.NAME", false},
		{"", "", true},
		{"", "x", false},
	}
	for _, tc := range cases {
		if got := glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func TestEventFilterMatches(t *testing.T) {
	msg := Event{Type: "m.room.message", Sender: "@alice:x", RoomID: "!r:x"}
	name := Event{Type: "m.room.name", Sender: "@bob:x", RoomID: "!r:x"}
	custom := Event{Type: "org.example.thing", Sender: "@carol:x", RoomID: "!r:x"}
	cases := []struct {
		name string
		f    EventFilter
		ev   Event
		want bool
	}{
		{"zero filter matches all", EventFilter{}, msg, true},
		{"types exact", EventFilter{Types: &[]string{"m.room.message"}}, msg, true},
		{"types exact other", EventFilter{Types: &[]string{"m.room.message"}}, name, false},
		{"types empty list matches nothing", EventFilter{Types: &[]string{}}, msg, false},
		{"types glob prefix", EventFilter{Types: &[]string{"m.room.*"}}, name, true},
		{"types glob prefix no match", EventFilter{Types: &[]string{"m.room.*"}}, custom, false},
		{"types glob star", EventFilter{Types: &[]string{"*"}}, custom, true},
		{"types glob middle", EventFilter{Types: &[]string{"m.*.name"}}, name, true},
		{"types glob middle no match", EventFilter{Types: &[]string{"m.*.name"}}, msg, false},
		{"types any of several", EventFilter{Types: &[]string{"x.y", "org.example.*"}}, custom, true},
		{"not_types exact", EventFilter{NotTypes: []string{"m.room.message"}}, msg, false},
		{"not_types other", EventFilter{NotTypes: []string{"m.room.message"}}, name, true},
		{"not_types glob", EventFilter{NotTypes: []string{"m.room.*"}}, name, false},
		{"not_types beats types", EventFilter{Types: &[]string{"m.room.*"}, NotTypes: []string{"m.room.name"}}, name, false},
		{"not_types leaves the rest of types", EventFilter{Types: &[]string{"m.room.*"}, NotTypes: []string{"m.room.name"}}, msg, true},
		{"senders", EventFilter{Senders: &[]string{"@alice:x"}}, msg, true},
		{"senders other", EventFilter{Senders: &[]string{"@alice:x"}}, name, false},
		{"senders empty list matches nothing", EventFilter{Senders: &[]string{}}, msg, false},
		{"senders are not globs", EventFilter{Senders: &[]string{"@alice:*"}}, msg, false},
		{"not_senders", EventFilter{NotSenders: []string{"@alice:x"}}, msg, false},
		{"not_senders other", EventFilter{NotSenders: []string{"@alice:x"}}, name, true},
		{"not_senders beats senders", EventFilter{Senders: &[]string{"@alice:x"}, NotSenders: []string{"@alice:x"}}, msg, false},
		{"type and sender both needed", EventFilter{Types: &[]string{"m.room.message"}, Senders: &[]string{"@bob:x"}}, msg, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Matches(tc.ev); got != tc.want {
				t.Errorf("Matches(%+v) = %v, want %v", tc.ev, got, tc.want)
			}
			// A room event filter with only these conditions decides the same way.
			if got := (RoomEventFilter{EventFilter: tc.f}).Matches(tc.ev); got != tc.want {
				t.Errorf("RoomEventFilter.Matches(%+v) = %v, want %v", tc.ev, got, tc.want)
			}
		})
	}
}

func TestRoomEventFilterMatches(t *testing.T) {
	withURL := Event{Type: "m.room.message", Sender: "@a:x", RoomID: "!r:x", Content: json.RawMessage(`{"msgtype":"m.image","url":"mxc://x/y"}`)}
	withoutURL := Event{Type: "m.room.message", Sender: "@a:x", RoomID: "!r:x", Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`)}
	nullURL := Event{Type: "m.room.message", Sender: "@a:x", RoomID: "!r:x", Content: json.RawMessage(`{"url":null}`)}
	noContent := Event{Type: "m.room.message", Sender: "@a:x", RoomID: "!r:x"}
	badContent := Event{Type: "m.room.message", Sender: "@a:x", RoomID: "!r:x", Content: json.RawMessage(`[1,2`)}
	other := Event{Type: "m.room.message", Sender: "@a:x", RoomID: "!other:x", Content: withoutURL.Content}
	cases := []struct {
		name string
		f    RoomEventFilter
		ev   Event
		want bool
	}{
		{"zero", RoomEventFilter{}, withURL, true},
		{"rooms", RoomEventFilter{Rooms: &[]string{"!r:x"}}, withURL, true},
		{"rooms other", RoomEventFilter{Rooms: &[]string{"!r:x"}}, other, false},
		{"rooms empty list", RoomEventFilter{Rooms: &[]string{}}, withURL, false},
		{"rooms are not globs", RoomEventFilter{Rooms: &[]string{"!*"}}, withURL, false},
		{"not_rooms", RoomEventFilter{NotRooms: []string{"!r:x"}}, withURL, false},
		{"not_rooms other", RoomEventFilter{NotRooms: []string{"!r:x"}}, other, true},
		{"not_rooms beats rooms", RoomEventFilter{Rooms: &[]string{"!r:x"}, NotRooms: []string{"!r:x"}}, withURL, false},
		{"contains_url true with url", RoomEventFilter{ContainsURL: ptr(true)}, withURL, true},
		{"contains_url true without url", RoomEventFilter{ContainsURL: ptr(true)}, withoutURL, false},
		{"contains_url false with url", RoomEventFilter{ContainsURL: ptr(false)}, withURL, false},
		{"contains_url false without url", RoomEventFilter{ContainsURL: ptr(false)}, withoutURL, true},
		{"contains_url true null url", RoomEventFilter{ContainsURL: ptr(true)}, nullURL, false},
		{"contains_url true no content", RoomEventFilter{ContainsURL: ptr(true)}, noContent, false},
		{"contains_url false no content", RoomEventFilter{ContainsURL: ptr(false)}, noContent, true},
		{"contains_url false bad content", RoomEventFilter{ContainsURL: ptr(false)}, badContent, true},
		{"event conditions still apply", RoomEventFilter{EventFilter: EventFilter{NotSenders: []string{"@a:x"}}, ContainsURL: ptr(true)}, withURL, false},
		{"room and type together", RoomEventFilter{EventFilter: EventFilter{Types: &[]string{"m.room.*"}}, Rooms: &[]string{"!r:x"}}, withURL, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Matches(tc.ev); got != tc.want {
				t.Errorf("Matches(%+v) = %v, want %v", tc.ev, got, tc.want)
			}
		})
	}
}

func TestAllowsRoom(t *testing.T) {
	cases := []struct {
		name     string
		rooms    *[]string
		notRooms []string
		room     string
		want     bool
	}{
		{"no conditions", nil, nil, "!a:x", true},
		{"listed", &[]string{"!a:x", "!b:x"}, nil, "!b:x", true},
		{"not listed", &[]string{"!a:x"}, nil, "!b:x", false},
		{"empty list", &[]string{}, nil, "!a:x", false},
		{"excluded", nil, []string{"!a:x"}, "!a:x", false},
		{"excluded other", nil, []string{"!a:x"}, "!b:x", true},
		{"listed and excluded", &[]string{"!a:x"}, []string{"!a:x"}, "!a:x", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := (RoomFilter{Rooms: tc.rooms, NotRooms: tc.notRooms}).AllowsRoom(tc.room); got != tc.want {
				t.Errorf("RoomFilter.AllowsRoom = %v, want %v", got, tc.want)
			}
			if got := (RoomEventFilter{Rooms: tc.rooms, NotRooms: tc.notRooms}).AllowsRoom(tc.room); got != tc.want {
				t.Errorf("RoomEventFilter.AllowsRoom = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLimitOr(t *testing.T) {
	cases := []struct {
		name          string
		limit         *int
		def, max, out int
	}{
		{"none gives default", nil, 10, 500, 10},
		{"set", ptr(20), 10, 500, 20},
		{"zero is kept", ptr(0), 10, 500, 0},
		{"capped", ptr(1000), 10, 500, 500},
		{"at cap", ptr(500), 10, 500, 500},
		{"default is not capped", nil, 50, 5, 50},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := (EventFilter{Limit: tc.limit}).LimitOr(tc.def, tc.max); got != tc.out {
				t.Errorf("LimitOr(%d, %d) = %d, want %d", tc.def, tc.max, got, tc.out)
			}
		})
	}
}

// TestParsedFilterMatches checks the JSON form and the matching together, as sync uses them.
func TestParsedFilterMatches(t *testing.T) {
	f, err := Parse([]byte(`{"room":{"timeline":{"types":["m.room.*"],"not_types":["m.room.member"],"not_senders":["@spam:x"],"limit":5}}}`))
	if err != nil {
		t.Fatal(err)
	}
	tl := f.Room.Timeline
	for _, tc := range []struct {
		ev   Event
		want bool
	}{
		{Event{Type: "m.room.message", Sender: "@a:x"}, true},
		{Event{Type: "m.room.member", Sender: "@a:x"}, false},
		{Event{Type: "m.room.message", Sender: "@spam:x"}, false},
		{Event{Type: "m.reaction", Sender: "@a:x"}, false},
	} {
		if got := tl.Matches(tc.ev); got != tc.want {
			t.Errorf("Matches(%+v) = %v, want %v", tc.ev, got, tc.want)
		}
	}
	if got := tl.LimitOr(10, 500); got != 5 {
		t.Errorf("LimitOr = %d, want 5", got)
	}
}

func openStore(t *testing.T) *store.Store { return storetest.Open(t, "") }

func TestSaveLoad(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	raw := json.RawMessage(`{"room":{"timeline":{"limit":7}}}`)
	id, err := Save(ctx, st, "@alice:x", raw)
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	if id == "" {
		t.Fatal("Save returned an empty id")
	}
	got, err := Load(ctx, st, "@alice:x", id)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !bytes.Equal(got, raw) {
		t.Errorf("Load = %s, want %s", got, raw)
	}

	// A second save gets a new id and leaves the first alone.
	raw2 := json.RawMessage(`{"presence":{"types":[]}}`)
	id2, err := Save(ctx, st, "@alice:x", raw2)
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	if id2 == id {
		t.Fatalf("two saves returned the same id %q", id)
	}
	if got, _ := Load(ctx, st, "@alice:x", id2); !bytes.Equal(got, raw2) {
		t.Errorf("Load(second) = %s, want %s", got, raw2)
	}
	if got, _ := Load(ctx, st, "@alice:x", id); !bytes.Equal(got, raw) {
		t.Errorf("Load(first) after a second save = %s, want %s", got, raw)
	}

	// Filters belong to their user.
	if _, err := Load(ctx, st, "@bob:x", id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load of another user's filter: err = %v, want ErrNotFound", err)
	}
}

func TestCacheLoadParsed(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	id, err := Save(ctx, st, "@alice:x", json.RawMessage(`{"room":{"timeline":{"limit":7}}}`))
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	var c Cache
	for range 2 { // the second read comes from the cache
		f, err := c.LoadParsed(ctx, st, "@alice:x", id)
		if err != nil || f.Room.Timeline.LimitOr(10, 100) != 7 {
			t.Fatalf("LoadParsed = limit %d, %v; want 7", f.Room.Timeline.LimitOr(10, 100), err)
		}
	}
	if _, err := c.LoadParsed(ctx, st, "@bob:x", id); !errors.Is(err, ErrNotFound) {
		t.Errorf("LoadParsed of another user's filter: %v, want ErrNotFound", err)
	}
}

func TestLoadUnknown(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	for _, id := range []string{"nope", "", "a.b", "*", ">", "ü"} {
		if b, err := Load(ctx, st, "@alice:x", id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Load(%q) = %s, %v; want ErrNotFound", id, b, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{}`, `null`, `[]`, ``, `{"event_format":"client"}`, `{"event_format":"x"}`,
		`{"room":{"timeline":{"limit":-1}}}`, `{"room":{"timeline":{"limit":9223372036854775808}}}`,
		`{"room":{"rooms":["!a:x"],"not_rooms":[],"timeline":{"types":["m.*"],"contains_url":false}}}`,
		`{"presence":{"senders":null,"limit":0}}`, `{"room":{"state":{"lazy_load_members":true}}}`,
		`{"event_fields":[1]}`, "\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		flt, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalid", b, err)
			}
			return
		}
		limits := []*int{flt.Presence.Limit, flt.AccountData.Limit, flt.Room.Timeline.Limit, flt.Room.State.Limit,
			flt.Room.Ephemeral.Limit, flt.Room.AccountData.Limit}
		for _, l := range limits {
			if l != nil && *l < 0 {
				t.Fatalf("Parse(%q) accepted a negative limit %d", b, *l)
			}
		}
		switch flt.EventFormat {
		case "", "client", "federation":
		default:
			t.Fatalf("Parse(%q) accepted event_format %q", b, flt.EventFormat)
		}
		// Whatever was accepted can be used without panicking.
		ev := Event{Type: "m.room.message", Sender: "@a:x", RoomID: "!r:x", Content: json.RawMessage(`{"url":"mxc://a/b"}`)}
		_ = flt.Room.Timeline.Matches(ev)
		_ = flt.Room.AllowsRoom(ev.RoomID)
		_ = flt.Presence.Matches(ev)
		_ = flt.Room.Timeline.LimitOr(10, 500)
	})
}
