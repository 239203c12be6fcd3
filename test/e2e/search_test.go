package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// searchResults is the part of a /search answer the tests read.
type searchResults struct {
	SearchCategories struct {
		RoomEvents struct {
			Count   int `json:"count"`
			Results []struct {
				Rank    float64     `json:"rank"`
				Result  event.Event `json:"result"`
				Context *struct {
					EventsBefore []event.Event `json:"events_before"`
					EventsAfter  []event.Event `json:"events_after"`
				} `json:"context"`
			} `json:"results"`
			NextBatch string                               `json:"next_batch"`
			State     map[string][]json.RawMessage         `json:"state"`
			Groups    map[string]map[string]map[string]any `json:"groups"`
		} `json:"room_events"`
	} `json:"search_categories"`
}

// testSearch: /search finds the messages a user may read by their words, newest first or by
// rank, in pages, with context, state and groups when asked, and nothing from rooms or
// history the user may not read.
func testSearch(t *testing.T, srv *server) {
	alice, bob, carol := registerUser(t, srv, "alice"), registerUser(t, srv, "bob"), registerUser(t, srv, "carol")
	room := sharedRoom(t, alice, bob)
	first := alice.sendText(t, room, "the martians are coming")
	alice.sendText(t, room, "nothing to see here")
	last := alice.sendText(t, room, "Martians and men, martians everywhere")
	_, err := alice.SendStateEvent(testCtx(t), room, event.StateTopic, "", &event.TopicEventContent{Topic: "a martian topic"})
	mustOK(t, err, "set the topic")
	search := func(u *user, query string, body string) searchResults {
		t.Helper()
		resp := rawRequest(t, "POST", clientURL(srv, "v3/search"+query), u.AccessToken, []byte(body))
		resp.expectOK(t)
		var out searchResults
		if err := json.Unmarshal(resp.Raw, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	ids := func(r searchResults) []id.EventID {
		var out []id.EventID
		for _, res := range r.SearchCategories.RoomEvents.Results {
			out = append(out, res.Result.ID)
		}
		return out
	}
	t.Run("RecentAndRank", func(t *testing.T) {
		got := search(bob, "", `{"search_categories":{"room_events":{"search_term":"MARTIANS","order_by":"recent"}}}`)
		if !slices.Equal(ids(got), []id.EventID{last, first}) || got.SearchCategories.RoomEvents.Count != 2 {
			t.Errorf("newest first: %v (count %d), want %v", ids(got), got.SearchCategories.RoomEvents.Count, []id.EventID{last, first})
		}
		byRank := search(bob, "", `{"search_categories":{"room_events":{"search_term":"martians"}}}`)
		if res := byRank.SearchCategories.RoomEvents.Results; len(res) != 2 || res[0].Result.ID != last || res[0].Rank <= res[1].Rank {
			t.Errorf("by rank: %v", ids(byRank))
		}
		topics := search(bob, "", `{"search_categories":{"room_events":{"search_term":"martian","keys":["content.topic"]}}}`)
		if res := topics.SearchCategories.RoomEvents.Results; len(res) != 1 || res[0].Result.Type != event.StateTopic {
			t.Errorf("the topic key found %v", ids(topics))
		}
	})
	t.Run("PagesContextStateGroups", func(t *testing.T) {
		body := `{"search_categories":{"room_events":{"search_term":"martians","order_by":"recent","filter":{"limit":1},
			"event_context":{"before_limit":1,"after_limit":1},"include_state":true,"groupings":{"group_by":[{"key":"room_id"}]}}}}`
		page1 := search(bob, "", body)
		re := page1.SearchCategories.RoomEvents
		if !slices.Equal(ids(page1), []id.EventID{last}) || re.NextBatch == "" {
			t.Fatalf("first page of 1: %v, next %q", ids(page1), re.NextBatch)
		}
		if c := re.Results[0].Context; c == nil || len(c.EventsBefore) != 1 || len(c.EventsAfter) != 1 {
			t.Errorf("context of the result: %+v", c)
		}
		if len(re.State[room.String()]) == 0 || re.Groups["room_id"][room.String()] == nil {
			t.Errorf("state or groups missing: %v, %v", re.State, re.Groups)
		}
		page2 := search(bob, "?next_batch="+re.NextBatch, body)
		if !slices.Equal(ids(page2), []id.EventID{first}) || page2.SearchCategories.RoomEvents.NextBatch != "" {
			t.Errorf("second page: %v, next %q", ids(page2), page2.SearchCategories.RoomEvents.NextBatch)
		}
	})
	t.Run("LimitZeroIsTheDefault", func(t *testing.T) {
		got := search(bob, "", `{"search_categories":{"room_events":{"search_term":"martians","filter":{"limit":0}}}}`)
		if len(ids(got)) != 2 || got.SearchCategories.RoomEvents.NextBatch != "" {
			t.Errorf("limit 0: %v, next %q", ids(got), got.SearchCategories.RoomEvents.NextBatch)
		}
	})
	t.Run("OnlyWhatTheUserMayRead", func(t *testing.T) {
		if got := search(carol, "", `{"search_categories":{"room_events":{"search_term":"martians"}}}`); len(ids(got)) != 0 {
			t.Errorf("carol, in no room, found %v", ids(got))
		}
		hidden := roomWithVisibility(t, alice, event.HistoryVisibilityJoined)
		alice.sendText(t, hidden, "martians before carol came")
		alice.invite(t, hidden, carol)
		carol.join(t, hidden.String(), hidden)
		after := alice.sendText(t, hidden, "martians after carol came")
		if got := ids(search(carol, "", `{"search_categories":{"room_events":{"search_term":"martians"}}}`)); !slices.Equal(got, []id.EventID{after}) {
			t.Errorf("carol found %v, want only the message after she joined", got)
		}
	})
	t.Run("Errors", func(t *testing.T) {
		for _, c := range []struct {
			name, query, body, errcode string
		}{
			{"no categories", "", `{}`, "M_MISSING_PARAM"},
			{"no term", "", `{"search_categories":{"room_events":{}}}`, "M_MISSING_PARAM"},
			{"an empty term", "", `{"search_categories":{"room_events":{"search_term":"  "}}}`, "M_INVALID_PARAM"},
			{"a bad order", "", `{"search_categories":{"room_events":{"search_term":"x","order_by":"oldest"}}}`, "M_INVALID_PARAM"},
			{"a bad key", "", `{"search_categories":{"room_events":{"search_term":"x","keys":["content.url"]}}}`, "M_INVALID_PARAM"},
			{"a bad token", "?next_batch=zz", `{"search_categories":{"room_events":{"search_term":"x"}}}`, "M_INVALID_PARAM"},
			{"an offset for a token", "?next_batch=s9223372036854775807", `{"search_categories":{"room_events":{"search_term":"x"}}}`, "M_INVALID_PARAM"},
			{"a bad grouping", "", `{"search_categories":{"room_events":{"search_term":"x","groupings":{"group_by":[{"key":"type"}]}}}}`, "M_INVALID_PARAM"},
		} {
			t.Run(c.name, func(t *testing.T) {
				rawRequest(t, "POST", clientURL(srv, "v3/search"+c.query), bob.AccessToken, []byte(c.body)).expectError(t, http.StatusBadRequest, c.errcode)
			})
		}
	})
}
