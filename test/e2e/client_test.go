package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// user is a logged-in account: a mautrix client plus what the tests need to
// log in again and to continue an incremental /sync.
type user struct {
	*mautrix.Client
	Localpart string
	Password  string
	since     string
}

var nameSeq atomic.Int64

// uniqueName makes localparts unique on a server shared by many tests.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, nameSeq.Add(1))
}

func userID(localpart string) id.UserID {
	return id.NewUserID(localpart, serverName)
}

func newClient(t testing.TB, srv *server, uid id.UserID, token string) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(srv.URL, uid, token)
	if err != nil {
		t.Fatalf("mautrix.NewClient: %v", err)
	}
	cli.Client = &http.Client{Timeout: 90 * time.Second}
	return cli
}

// registerUser creates a fresh account with m.login.dummy registration.
func registerUser(t testing.TB, srv *server, prefix string) *user {
	t.Helper()
	name := uniqueName(prefix)
	pw := "pw-" + name
	cli := newClient(t, srv, "", "")
	resp, err := cli.RegisterDummy(testCtx(t), &mautrix.ReqRegister[any]{Username: name, Password: pw})
	mustOK(t, err, "register "+name)
	if resp.UserID != userID(name) || resp.AccessToken == "" || resp.DeviceID == "" {
		t.Fatalf("register %s: unexpected response %+v", name, resp)
	}
	cli.UserID, cli.AccessToken, cli.DeviceID = resp.UserID, resp.AccessToken, resp.DeviceID
	return &user{Client: cli, Localpart: name, Password: pw}
}

func passwordLogin(localpart, password string) *mautrix.ReqLogin {
	return &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: localpart},
		Password:   password,
	}
}

// login logs the account in again with m.login.password and returns a user
// bound to the new device.
func (u *user) login(t testing.TB, srv *server) *user {
	t.Helper()
	return loginAs(t, srv, u.Localpart, u.Password)
}

func loginAs(t testing.TB, srv *server, localpart, password string) *user {
	t.Helper()
	cli := newClient(t, srv, "", "")
	req := passwordLogin(localpart, password)
	req.StoreCredentials = true
	resp, err := cli.Login(testCtx(t), req)
	mustOK(t, err, "login "+localpart)
	if resp.UserID != userID(localpart) || resp.AccessToken == "" || resp.DeviceID == "" {
		t.Fatalf("login %s: unexpected response %+v", localpart, resp)
	}
	return &user{Client: cli, Localpart: localpart, Password: password}
}

// syncOnce does one /sync from the user's last next_batch and advances it.
func (u *user) syncOnce(t testing.TB, timeoutMS int) *mautrix.RespSync {
	t.Helper()
	resp, err := u.FullSyncRequest(testCtx(t), mautrix.ReqSync{Timeout: timeoutMS, Since: u.since})
	mustOK(t, err, "sync as "+u.UserID.String())
	if resp.NextBatch == "" {
		t.Fatalf("sync as %s: empty next_batch", u.UserID)
	}
	u.since = resp.NextBatch
	return resp
}

// syncUntil long-polls /sync until pred accepts a response.
func (u *user) syncUntil(t testing.TB, what string, pred func(*mautrix.RespSync) bool) *mautrix.RespSync {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp := u.syncOnce(t, 5000); pred(resp) {
			return resp
		}
	}
	t.Fatalf("%s never saw %s through /sync", u.UserID, what)
	return nil
}

// waitForMessages syncs until every wanted body has appeared in the timeline
// of its room, and returns the timeline events by body. Bodies must be unique.
func (u *user) waitForMessages(t testing.TB, want map[id.RoomID][]string) map[string]*event.Event {
	t.Helper()
	type sighting struct {
		room id.RoomID
		evt  *event.Event
	}
	seen := map[string]sighting{}
	u.syncUntil(t, fmt.Sprintf("messages %q", want), func(resp *mautrix.RespSync) bool {
		for roomID, room := range resp.Rooms.Join {
			for _, evt := range room.Timeline.Events {
				b := msgBody(evt)
				if b == "" {
					continue
				}
				if prev, dup := seen[b]; dup && prev.evt.ID != evt.ID {
					t.Errorf("body %q delivered as two events %s and %s", b, prev.evt.ID, evt.ID)
				}
				seen[b] = sighting{roomID, evt}
			}
		}
		for roomID, bs := range want {
			for _, b := range bs {
				if seen[b].room != roomID {
					return false
				}
			}
		}
		return true
	})
	out := make(map[string]*event.Event, len(seen))
	for b, s := range seen {
		out[b] = s.evt
	}
	return out
}

func joinedRoom(resp *mautrix.RespSync, roomID id.RoomID) *mautrix.SyncJoinedRoom {
	if resp == nil {
		return nil
	}
	return resp.Rooms.Join[roomID]
}

func roomTimeline(resp *mautrix.RespSync, roomID id.RoomID) []*event.Event {
	if room := joinedRoom(resp, roomID); room != nil {
		return room.Timeline.Events
	}
	return nil
}

// msgBody is the body of an m.room.message event, or "" for anything else.
func msgBody(evt *event.Event) string {
	if evt == nil || evt.Type.Type != event.EventMessage.Type {
		return ""
	}
	b, _ := evt.Content.Raw["body"].(string)
	return b
}

func (u *user) createRoom(t testing.TB, req *mautrix.ReqCreateRoom) id.RoomID {
	t.Helper()
	resp, err := u.CreateRoom(testCtx(t), req)
	mustOK(t, err, "createRoom")
	if !strings.HasPrefix(resp.RoomID.String(), "!") {
		t.Fatalf("createRoom returned room id %q", resp.RoomID)
	}
	return resp.RoomID
}

// sharedRoom creates a private room owned by u and joins every member to it.
func sharedRoom(t testing.TB, owner *user, members ...*user) id.RoomID {
	t.Helper()
	roomID := owner.createRoom(t, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	for _, m := range members {
		_, err := owner.InviteUser(testCtx(t), roomID, &mautrix.ReqInviteUser{UserID: m.UserID})
		mustOK(t, err, "invite "+m.UserID.String())
		m.join(t, roomID.String(), roomID)
	}
	return roomID
}

// join joins a room by id or alias and checks the room id the server answers.
func (u *user) join(t testing.TB, roomIDOrAlias string, want id.RoomID) {
	t.Helper()
	resp, err := u.JoinRoom(testCtx(t), roomIDOrAlias, nil)
	mustOK(t, err, fmt.Sprintf("%s joins %s", u.UserID, roomIDOrAlias))
	if resp.RoomID != want {
		t.Fatalf("join %s: got room %s, want %s", roomIDOrAlias, resp.RoomID, want)
	}
}

func (u *user) sendText(t testing.TB, roomID id.RoomID, text string) id.EventID {
	t.Helper()
	resp, err := u.SendText(testCtx(t), roomID, text)
	mustOK(t, err, fmt.Sprintf("%s sends %q", u.UserID, text))
	if !strings.HasPrefix(resp.EventID.String(), "$") {
		t.Fatalf("send returned event id %q", resp.EventID)
	}
	return resp.EventID
}

// syncToken returns a fresh next_batch for the user without moving u.since.
func (u *user) syncToken(t testing.TB) string {
	t.Helper()
	resp, err := u.FullSyncRequest(testCtx(t), mautrix.ReqSync{Since: u.since})
	mustOK(t, err, "sync for token")
	return resp.NextBatch
}

func mustOK(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// expectMatrixError checks that a mautrix call failed with the given HTTP
// status and errcode, and that the body also carried an "error" string.
func expectMatrixError(t testing.TB, err error, status int, errcode string) *mautrix.RespError {
	t.Helper()
	if err == nil {
		t.Fatalf("expected %d %s, request succeeded", status, errcode)
	}
	var httpErr mautrix.HTTPError
	if !errors.As(err, &httpErr) || httpErr.Response == nil {
		t.Fatalf("expected %d %s, got non-HTTP error %v", status, errcode, err)
	}
	if httpErr.Response.StatusCode != status || httpErr.RespError == nil || httpErr.RespError.ErrCode != errcode {
		t.Fatalf("expected %d %s, got %v", status, errcode, err)
	}
	if _, ok := httpErr.RespError.ExtraData["error"].(string); !ok {
		t.Errorf("%s response has no \"error\" string: %v", errcode, httpErr.RespError.ExtraData)
	}
	return httpErr.RespError
}

// rawResponse is the outcome of a hand-built request.
type rawResponse struct {
	Status int
	Body   map[string]any
	Raw    []byte
}

// rawClient does not follow redirects: a test sees the server's own answer.
var rawClient = &http.Client{Timeout: 60 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// rawRequest sends a request mautrix would refuse to build: bad JSON, no or
// bogus token, huge bodies. body may be nil.
func rawRequest(t testing.TB, method, url, token string, body []byte) rawResponse {
	t.Helper()
	return rawRequestWith(t, method, url, token, body, nil)
}

// rawRequestWith is rawRequest with extra headers.
func rawRequestWith(t testing.TB, method, url, token string, body []byte, header http.Header) rawResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	out := rawResponse{Status: resp.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &out.Body)
	return out
}

// expectError checks status, errcode and that the body is a JSON error object.
func (r rawResponse) expectError(t testing.TB, status int, errcode string) {
	t.Helper()
	code, _ := r.Body["errcode"].(string)
	_, hasMsg := r.Body["error"].(string)
	if r.Status != status || code != errcode || !hasMsg {
		t.Fatalf("want %d {errcode:%s, error:...}, got %d %s", status, errcode, r.Status, r.Raw)
	}
}

func (r rawResponse) expectOK(t testing.TB) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("want 200, got %d %s", r.Status, r.Raw)
	}
}

// clientURL is the full URL of a client-server API path such as
// "v3/account/whoami".
func clientURL(srv *server, path string) string {
	return srv.URL + "/_matrix/client/" + path
}

// roomMessages pages /messages from one token in one direction until the
// server reports the end (no end token, or an empty page that does not move),
// returning every event in the order served and the non-empty pages.
func roomMessages(t testing.TB, u *user, roomID id.RoomID, from, to string, dir mautrix.Direction, filter *mautrix.FilterPart, limit int) (events []*event.Event, pages []*mautrix.RespMessages) {
	t.Helper()
	for range 1000 {
		resp, err := u.Messages(testCtx(t), roomID, from, to, dir, filter, limit)
		mustOK(t, err, "/messages")
		if len(resp.Chunk) > limit {
			t.Fatalf("/messages returned %d events with limit %d", len(resp.Chunk), limit)
		}
		if len(resp.Chunk) > 0 {
			events = append(events, resp.Chunk...)
			pages = append(pages, resp)
		}
		if resp.End == "" || (len(resp.Chunk) == 0 && resp.End == from) {
			return events, pages
		}
		from = resp.End
	}
	t.Fatalf("/messages did not reach the end after 1000 pages")
	return nil, nil
}

// bodies lists the m.room.message bodies of events, in order.
func bodies(events []*event.Event) []string {
	var out []string
	for _, evt := range events {
		if b := msgBody(evt); b != "" {
			out = append(out, b)
		}
	}
	return out
}

func eventIDs(events []*event.Event) []id.EventID {
	out := make([]id.EventID, len(events))
	for i, evt := range events {
		out[i] = evt.ID
	}
	return out
}
