package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/firebreak/firebreak/internal/syncer"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/synapseadmin"
)

const maxEventSize = 65536

// messageJSON is the body of an m.text message.
func messageJSON(body string) []byte {
	raw, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
	return raw
}

// roomHead is the newest event of the room as the user sees it.
func roomHead(t *testing.T, u *user, room id.RoomID) id.EventID {
	t.Helper()
	resp, err := u.Messages(testCtx(t), room, u.syncToken(t), "", mautrix.DirectionBackward, nil, 1)
	mustOK(t, err, "/messages limit 1")
	if len(resp.Chunk) != 1 {
		t.Fatalf("room %s has no newest event", room)
	}
	return resp.Chunk[0].ID
}

// testErrorResponses: each class of bad request gets its status and errcode
// in a JSON error body, and leaves the room untouched.
func testErrorResponses(t *testing.T, srv *server) {
	alice, outsider := registerUser(t, srv, "alice"), registerUser(t, srv, "outsider")
	room := sharedRoom(t, alice)
	alice.sendText(t, room, "before the errors")
	head := roomHead(t, alice, room)
	send := func(txn string) string {
		return fmt.Sprintf("v3/rooms/%s/send/m.room.message/%s", url.PathEscape(room.String()), txn)
	}
	login := func(password string) []byte {
		raw, _ := json.Marshal(map[string]any{
			"type":       "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": alice.Localpart},
			"password":   password,
		})
		return raw
	}
	huge := messageJSON(strings.Repeat("x", maxBodySize+maxBodySize/2))
	long := strings.Repeat("a", 3000) // NATS closes a connection sent a line over 4 KiB
	state := func(evType string) string {
		return fmt.Sprintf("v3/rooms/%s/state/%s/", url.PathEscape(room.String()), evType)
	}
	loginWithDevice := func(device string) []byte {
		raw, _ := json.Marshal(map[string]any{
			"type":       "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": alice.Localpart},
			"password":   alice.Password,
			"device_id":  device,
		})
		return raw
	}

	cases := []struct {
		name    string
		method  string
		path    string
		token   string
		body    []byte
		status  int
		errcode string
	}{
		{"NotJSONSend", "PUT", send("notjson"), alice.AccessToken, []byte(`{"msgtype": "m.text", "body": `), 400, "M_NOT_JSON"},
		{"NotJSONLogin", "POST", "v3/login", "", []byte("this is not json"), 400, "M_NOT_JSON"},
		{"PasswordNotString", "POST", "v3/login", "", []byte(`{"type":"m.login.password","identifier":{"type":"m.id.user","user":"` + alice.Localpart + `"},"password":5}`), 400, "M_BAD_JSON"},
		{"RoomNameNotString", "POST", "v3/createRoom", alice.AccessToken, []byte(`{"name": 5}`), 400, "M_BAD_JSON"},
		{"RoomOverOneBatch", "POST", "v3/createRoom", alice.AccessToken, manyInitialState(1000), 400, "M_INVALID_PARAM"},
		{"MissingToken", "GET", "v3/account/whoami", "", nil, 401, "M_MISSING_TOKEN"},
		{"MissingTokenSend", "PUT", send("notoken"), "", messageJSON("no token"), 401, "M_MISSING_TOKEN"},
		{"UnknownToken", "GET", "v3/account/whoami", "not-a-real-token", nil, 401, "M_UNKNOWN_TOKEN"},
		{"UnknownTokenSend", "PUT", send("badtoken"), "not-a-real-token", messageJSON("bad token"), 401, "M_UNKNOWN_TOKEN"},
		{"SendNotInRoom", "PUT", send("intruder"), outsider.AccessToken, messageJSON("intruder"), 403, "M_FORBIDDEN"},
		{"UnknownEvent", "GET", fmt.Sprintf("v3/rooms/%s/event/%s", url.PathEscape(room.String()), url.PathEscape("$doesnotexist")), alice.AccessToken, nil, 404, "M_NOT_FOUND"},
		{"UnknownRoom", "GET", "v3/rooms/" + url.PathEscape("!doesnotexist:localhost") + "/event/" + url.PathEscape("$doesnotexist"), alice.AccessToken, nil, 404, "M_NOT_FOUND"},
		{"UnknownAlias", "GET", "v3/directory/room/" + url.PathEscape("#doesnotexist:localhost"), alice.AccessToken, nil, 404, "M_NOT_FOUND"},
		{"BodyTooLarge", "PUT", send("huge"), alice.AccessToken, huge, 413, "M_TOO_LARGE"},
		{"EventTooLarge", "PUT", send("bigevent"), alice.AccessToken, messageJSON(strings.Repeat("y", maxEventSize+1000)), 413, "M_TOO_LARGE"},
		{"InvalidUsername", "GET", "v3/register/available?username=" + url.QueryEscape("Bad Name!"), "", nil, 400, "M_INVALID_USERNAME"},
		{"AvailableWithoutUsername", "GET", "v3/register/available", "", nil, 400, "M_MISSING_PARAM"},
		{"UnknownEndpoint", "GET", "v3/this/endpoint/does/not/exist", alice.AccessToken, nil, 404, "M_UNRECOGNIZED"},
		{"UnknownEndpointUnauthenticated", "POST", "v3/frobnicate", "", []byte(`{}`), 404, "M_UNRECOGNIZED"},
		{"WrongMethod", "DELETE", "v3/sync", alice.AccessToken, nil, 405, "M_UNRECOGNIZED"},
		{"WrongMethodUnauthenticated", "POST", "v3/account/whoami", "", []byte(`{}`), 405, "M_UNRECOGNIZED"},
		{"UnknownEndpointDoubleSlash", "GET", "v3//this/does/not/exist", alice.AccessToken, nil, 404, "M_UNRECOGNIZED"},
		{"UnknownEndpointDotSegment", "GET", "v3/../this/does/not/exist", alice.AccessToken, nil, 404, "M_UNRECOGNIZED"},
		{"DotSegmentTakenLiterally", "POST", "v3/../v3/account/whoami", "", []byte(`{}`), 404, "M_UNRECOGNIZED"},
		{"DoubleSlashBeforeKnownEndpoint", "GET", "v3//sync", alice.AccessToken, nil, 404, "M_UNRECOGNIZED"},
		{"QueryBadEscape", "GET", fmt.Sprintf("v3/rooms/%s/messages?dir=b&from=%%zz", url.PathEscape(room.String())), alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
		{"PageFromNowhere", "GET", fmt.Sprintf("v3/rooms/%s/messages?dir=b&from=r99999999", url.PathEscape(room.String())), alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
		{"SyncBadPresence", "GET", "v3/sync?timeout=0&set_presence=bogus", alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
		{"SyncBadFullState", "GET", "v3/sync?timeout=0&full_state=maybe", alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
		{"ReceiptsPositionFromNowhere", "GET", "v3/sync?timeout=0&since=" + url.QueryEscape(futureToken(t, alice, 1)), alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
		{"AccountDataPositionFromNowhere", "GET", "v3/sync?timeout=0&since=" + url.QueryEscape(futureToken(t, alice, 2)), alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
		{"TokenFromNowhere", "GET", "v3/sync?timeout=0&since=" + url.QueryEscape(futureToken(t, alice, 0)), alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
		{"EmptySendBody", "PUT", send("empty"), alice.AccessToken, nil, 400, "M_NOT_JSON"},
		{"EmptyStateBody", "PUT", state("m.room.power_levels"), alice.AccessToken, nil, 400, "M_NOT_JSON"},
		{"InvalidUTF8", "PUT", send("badutf8"), alice.AccessToken, []byte("{\"msgtype\":\"m.text\",\"body\":\"\xff\xfe\"}"), 400, "M_NOT_JSON"},
		{"LongUserID", "GET", "v3/profile/" + url.PathEscape("@"+long+":localhost"), "", nil, 400, "M_INVALID_PARAM"},
		{"LongRoomID", "GET", "v3/rooms/" + url.PathEscape("!"+long+":localhost") + "/state", alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
		{"LongDeviceID", "POST", "v3/login", "", loginWithDevice(long), 400, "M_INVALID_PARAM"},
		{"CreateRoomInviteUnknownUser", "POST", "v3/createRoom", alice.AccessToken, []byte(`{"invite":["@nobody-here:localhost"]}`), 404, "M_NOT_FOUND"},
		{"PowerLevelsNotIntegers", "POST", "v3/createRoom", alice.AccessToken, []byte(`{"power_level_content_override":{"users_default":"abc"}}`), 400, "M_BAD_JSON"},
		{"PowerLevelsNullLevel", "POST", "v3/createRoom", alice.AccessToken, []byte(`{"power_level_content_override":{"ban":null}}`), 400, "M_BAD_JSON"},
		{"PowerLevelsNullUserLevel", "PUT", state("m.room.power_levels"), alice.AccessToken, []byte(`{"users":{"` + alice.UserID.String() + `":null}}`), 400, "M_BAD_JSON"},
		{"PowerLevelsNullEvents", "PUT", state("m.room.power_levels"), alice.AccessToken, []byte(`{"users":{"` + alice.UserID.String() + `":100},"events":null}`), 400, "M_BAD_JSON"},
		{"PowerLevelsNullAfterRepeatedKey", "PUT", state("m.room.power_levels"), alice.AccessToken, []byte(`{"users":{"` + alice.UserID.String() + `":100,"` + alice.UserID.String() + `":null}}`), 400, "M_BAD_JSON"},
		{"PowerLevelsUserNotUserID", "PUT", state("m.room.power_levels"), alice.AccessToken, []byte(`{"users":{"` + alice.UserID.String() + `":100,"notauser":50}}`), 400, "M_BAD_JSON"},
		{"CreateRoomRefusedAfterItsAlias", "POST", "v3/createRoom", alice.AccessToken, []byte(`{"creation_content":null,"room_alias_name":"refused","power_level_content_override":{"ban":null}}`), 400, "M_BAD_JSON"},
		{"AccountDataNumberPastFloat64", "PUT", "v3/user/" + url.PathEscape(alice.UserID.String()) + "/account_data/x.big", alice.AccessToken, []byte(`{"n":1e400}`), 400, "M_BAD_JSON"},
		{"ToDeviceNumberPastFloat64", "PUT", "v3/sendToDevice/x.big/big1", alice.AccessToken, []byte(`{"messages":{"` + alice.UserID.String() + `":{"*":{"n":-1e400}}}}`), 400, "M_BAD_JSON"},
		{"CanonicalAliasMalformed", "PUT", state("m.room.canonical_alias"), alice.AccessToken, []byte(`{"alias":"not an alias"}`), 400, "M_BAD_ALIAS"},
		{"CanonicalAliasElsewhere", "PUT", state("m.room.canonical_alias"), alice.AccessToken, []byte(`{"alias":"#nowhere:localhost"}`), 400, "M_BAD_ALIAS"},
		{"AliasWithSpace", "PUT", "v3/directory/room/" + url.PathEscape("#bad alias:localhost"), alice.AccessToken, []byte(`{"room_id":"` + room.String() + `"}`), 400, "M_INVALID_PARAM"},
		{"PathNotUTF8", "PUT", state("x.bad") + "%FF", alice.AccessToken, []byte(`{"k":1}`), 400, "M_INVALID_PARAM"},
		{"EventTypeNotUTF8", "PUT", fmt.Sprintf("v3/rooms/%s/send/%%FF/badtype", url.PathEscape(room.String())), alice.AccessToken, messageJSON("x"), 400, "M_INVALID_PARAM"},
		{"LoneSurrogate", "PUT", send("surrogate"), alice.AccessToken, []byte(`{"msgtype":"m.text","body":"a\ud800b"}`), 400, "M_BAD_JSON"},
		{"AliasColonInLocalpart", "PUT", "v3/directory/room/" + url.PathEscape("#a:b:localhost"), alice.AccessToken, []byte(`{"room_id":"` + room.String() + `"}`), 400, "M_INVALID_PARAM"},
		{"AliasNUL", "PUT", "v3/directory/room/%23a%00b:localhost", alice.AccessToken, []byte(`{"room_id":"` + room.String() + `"}`), 400, "M_INVALID_PARAM"},
		{"RoomAliasNameNUL", "POST", "v3/createRoom", alice.AccessToken, []byte(`{"room_alias_name":"nul\u0000x"}`), 400, "M_INVALID_PARAM"},
		{"CreateRoomOwnPowerTooLow", "POST", "v3/createRoom", alice.AccessToken, []byte(`{"power_level_content_override":{"users":{"` + alice.UserID.String() + `":0}}}`), 400, "M_INVALID_ROOM_STATE"},
		{"CreateRoomInviteSelf", "POST", "v3/createRoom", alice.AccessToken, []byte(`{"invite":["` + alice.UserID.String() + `"]}`), 400, "M_INVALID_ROOM_STATE"},
		{"CreationContentTypeNotString", "POST", "v3/createRoom", alice.AccessToken, []byte(`{"creation_content":{"type":5}}`), 400, "M_BAD_JSON"},
		{"CreationContentFederateNotBool", "POST", "v3/createRoom", alice.AccessToken, []byte(`{"creation_content":{"m.federate":"no"}}`), 400, "M_BAD_JSON"},
		{"RoomAccountDataNotRoomID", "PUT", "v3/user/" + url.PathEscape(alice.UserID.String()) + "/rooms/garbage/account_data/x.y", alice.AccessToken, []byte(`{}`), 400, "M_INVALID_PARAM"},
		{"RoomAccountDataReadNotRoomID", "GET", "v3/user/" + url.PathEscape(alice.UserID.String()) + "/rooms/garbage/account_data/x.y", alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
		{"TagPutNotRoomID", "PUT", "v3/user/" + url.PathEscape(alice.UserID.String()) + "/rooms/garbage/tags/u.work", alice.AccessToken, []byte(`{}`), 400, "M_INVALID_PARAM"},
		{"TagDeleteNotRoomID", "DELETE", "v3/user/" + url.PathEscape(alice.UserID.String()) + "/rooms/garbage/tags/u.work", alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
		{"RegisterDeviceIDOver255Bytes", "POST", "v3/register", "", []byte(`{"username":"` + uniqueName("longdevice") + `","password":"a-long-password","device_id":"` + strings.Repeat("d", 256) + `","auth":{"type":"m.login.dummy"}}`), 400, "M_INVALID_PARAM"},
		{"TagsNotRoomID", "GET", "v3/user/" + url.PathEscape(alice.UserID.String()) + "/rooms/garbage/tags", alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
		{"ReceiptBadThreadID", "POST", fmt.Sprintf("v3/rooms/%s/receipt/m.read/%s", url.PathEscape(room.String()), url.PathEscape(head.String())), alice.AccessToken, []byte(`{"thread_id":"not-a-thread"}`), 400, "M_INVALID_PARAM"},
		{"ReceiptEmptyThreadID", "POST", fmt.Sprintf("v3/rooms/%s/receipt/m.read/%s", url.PathEscape(room.String()), url.PathEscape(head.String())), alice.AccessToken, []byte(`{"thread_id":""}`), 400, "M_INVALID_PARAM"},
		{"ReceiptFullyReadWithThread", "POST", fmt.Sprintf("v3/rooms/%s/receipt/m.fully_read/%s", url.PathEscape(room.String()), url.PathEscape(head.String())), alice.AccessToken, []byte(`{"thread_id":"main"}`), 400, "M_INVALID_PARAM"},
		{"ReceiptThreadNotInRoom", "POST", fmt.Sprintf("v3/rooms/%s/receipt/m.read/%s", url.PathEscape(room.String()), url.PathEscape(head.String())), alice.AccessToken, []byte(`{"thread_id":"$nosuchroot"}`), 400, "M_INVALID_PARAM"},
		{"TypingWithoutTyping", "PUT", fmt.Sprintf("v3/rooms/%s/typing/%s", url.PathEscape(room.String()), url.PathEscape(alice.UserID.String())), alice.AccessToken, []byte(`{}`), 400, "M_MISSING_PARAM"},
		{"RedactUnknownEventNotMember", "PUT", fmt.Sprintf("v3/rooms/%s/redact/%s/z", url.PathEscape(room.String()), url.PathEscape("$doesnotexist")), outsider.AccessToken, []byte(`{}`), 403, "M_FORBIDDEN"},
		{"DeviceIDOver255Bytes", "POST", "v3/login", "", loginWithDevice(strings.Repeat("d", 256)), 400, "M_INVALID_PARAM"},
		{"DeviceIDControlCharacter", "POST", "v3/login", "", loginWithDevice("a\x00b"), 400, "M_INVALID_PARAM"},
		{"InitialStateWithoutContent", "POST", "v3/createRoom", alice.AccessToken, []byte(`{"initial_state":[{"type":"m.room.power_levels"}]}`), 400, "M_BAD_JSON"},
		{"InitialStateCanonicalAliasElsewhere", "POST", "v3/createRoom", alice.AccessToken, []byte(`{"initial_state":[{"type":"m.room.canonical_alias","content":{"alias":"#nowhere:localhost"}}]}`), 400, "M_BAD_ALIAS"},
		{"CreateRoomBadVisibility", "POST", "v3/createRoom", alice.AccessToken, []byte(`{"visibility":"bogus"}`), 400, "M_INVALID_PARAM"},
		{"MessagesFilterNegativeLimit", "GET", fmt.Sprintf("v3/rooms/%s/messages?dir=b&filter=%s", url.PathEscape(room.String()), url.QueryEscape(`{"limit":-1}`)), alice.AccessToken, nil, 400, "M_BAD_JSON"},
		{"MembersBadMembership", "GET", fmt.Sprintf("v3/rooms/%s/members?membership=bogus", url.PathEscape(room.String())), alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
		{"AliasWithoutRoomID", "PUT", "v3/directory/room/" + url.PathEscape("#noroom:localhost"), alice.AccessToken, []byte(`{}`), 400, "M_MISSING_PARAM"},
		{"AliasRoomIDMalformed", "PUT", "v3/directory/room/" + url.PathEscape("#badroom:localhost"), alice.AccessToken, []byte(`{"room_id":"garbage"}`), 400, "M_INVALID_PARAM"},
		{"TypingNegativeTimeout", "PUT", fmt.Sprintf("v3/rooms/%s/typing/%s", url.PathEscape(room.String()), url.PathEscape(alice.UserID.String())), alice.AccessToken, []byte(`{"typing":true,"timeout":-5}`), 400, "M_INVALID_PARAM"},
		{"ReadMarkersNotMember", "POST", fmt.Sprintf("v3/rooms/%s/read_markers", url.PathEscape(room.String())), outsider.AccessToken, []byte(`{"m.fully_read":"$nope"}`), 403, "M_FORBIDDEN"},
		{"ReadMarkersOneUnknown", "POST", fmt.Sprintf("v3/rooms/%s/read_markers", url.PathEscape(room.String())), alice.AccessToken, []byte(`{"m.read":"` + head.String() + `","m.fully_read":"$nope"}`), 404, "M_NOT_FOUND"},
		{"ProfileFieldUnset", "GET", "v3/profile/" + url.PathEscape(outsider.UserID.String()) + "/avatar_url", "", nil, 404, "M_NOT_FOUND"},
		{"PresenceUnknownUser", "GET", "v3/presence/" + url.PathEscape("@nobody-here:localhost") + "/status", alice.AccessToken, nil, 404, "M_NOT_FOUND"},
		{"WrongPassword", "POST", "v3/login", "", login("not the password"), 403, "M_FORBIDDEN"},
		{"UnknownUserLogin", "POST", "v3/login", "", []byte(`{"type":"m.login.password","identifier":{"type":"m.id.user","user":"nosuchuser"},"password":"x"}`), 403, "M_FORBIDDEN"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rawRequest(t, tc.method, clientURL(srv, tc.path), tc.token, tc.body).expectError(t, tc.status, tc.errcode)
			if now := roomHead(t, alice, room); now != head {
				t.Errorf("failed request changed the room: newest event is now %s, was %s", now, head)
			}
		})
	}

	t.Run("NothingChanged", func(t *testing.T) {
		joined, err := alice.JoinedRooms(testCtx(t))
		mustOK(t, err, "joined_rooms")
		if !slices.Equal(joined.JoinedRooms, []id.RoomID{room}) {
			t.Errorf("failed createRoom left rooms behind: %v", joined.JoinedRooms)
		}
		rawRequest(t, "GET", clientURL(srv, "v3/directory/room/"+url.PathEscape("#refused:localhost")), alice.AccessToken, nil).
			expectError(t, 404, "M_NOT_FOUND")
		// Alice's password still works and her token too.
		loginAs(t, srv, alice.Localpart, alice.Password)
		_, err = alice.Whoami(testCtx(t))
		mustOK(t, err, "whoami after failed logins")
	})
}

// testRegistrationErrors: bad and taken usernames are refused and the
// refused registration changes nothing.
func testRegistrationErrors(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	anon := newClient(t, srv, "", "")
	register := func(name, password string) error {
		_, err := anon.RegisterDummy(testCtx(t), &mautrix.ReqRegister[any]{Username: name, Password: password})
		return err
	}

	t.Run("InvalidUsername", func(t *testing.T) {
		for _, name := range []string{"@full:" + serverName, "_bridged", strings.Repeat("long", 70)} {
			expectMatrixError(t, register(name, "whatever"), http.StatusBadRequest, "M_INVALID_USERNAME")
		}
		expectMatrixError(t, register("Bad Name!", "whatever"), http.StatusBadRequest, "M_INVALID_USERNAME")
		// The refused name must not have become an account.
		_, err := anon.Login(testCtx(t), passwordLogin("Bad Name!", "whatever"))
		var httpErr mautrix.HTTPError
		if !errors.As(err, &httpErr) || !(httpErr.IsStatus(http.StatusForbidden) || httpErr.IsStatus(http.StatusBadRequest)) {
			t.Errorf("login as the refused name: got %v, want 403 or 400", err)
		}
	})
	t.Run("TakenUsername", func(t *testing.T) {
		expectMatrixError(t, register(alice.Localpart, "hijacked"), http.StatusBadRequest, "M_USER_IN_USE")
		_, err := anon.Login(testCtx(t), passwordLogin(alice.Localpart, "hijacked"))
		expectMatrixError(t, err, http.StatusForbidden, "M_FORBIDDEN")
		loginAs(t, srv, alice.Localpart, alice.Password)
	})
}

// testEventSizeLimit: an event just under 64 KiB is accepted, one over is
// refused with 413 and is not stored.
func testEventSizeLimit(t *testing.T, srv *server) {
	alice := registerUser(t, srv, "alice")
	room := sharedRoom(t, alice)
	alice.sendText(t, room, strings.Repeat("a", maxEventSize-4096))
	_, err := alice.SendText(testCtx(t), room, "TOO BIG "+strings.Repeat("b", maxEventSize))
	expectMatrixError(t, err, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	events, _ := roomMessages(t, alice, room, alice.syncToken(t), "", mautrix.DirectionBackward, nil, 50)
	for _, b := range bodies(events) {
		if strings.HasPrefix(b, "TOO BIG") {
			t.Fatalf("the refused event is in the room history")
		}
	}
}

// TestRegistrationDisabled: with enable_registration false, /register is
// refused, while shared-secret registration and `firebreak register` work.
func TestRegistrationDisabled(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{DisableRegistration: true})
	anon := newClient(t, srv, "", "")

	t.Run("RegisterForbidden", func(t *testing.T) {
		_, err := anon.RegisterDummy(testCtx(t), &mautrix.ReqRegister[any]{Username: "newbie", Password: "pw-newbie"})
		expectMatrixError(t, err, http.StatusForbidden, "M_FORBIDDEN")
		body := []byte(`{"username":"newbie","password":"pw-newbie","auth":{"type":"m.login.dummy"}}`)
		rawRequest(t, "POST", clientURL(srv, "v3/register"), "", body).expectError(t, http.StatusForbidden, "M_FORBIDDEN")
		_, err = anon.Login(testCtx(t), passwordLogin("newbie", "pw-newbie"))
		expectMatrixError(t, err, http.StatusForbidden, "M_FORBIDDEN")
	})
	t.Run("SharedSecret", func(t *testing.T) {
		admin := &synapseadmin.Client{Client: anon}
		resp, err := admin.SharedSecretRegister(testCtx(t), sharedSecret, synapseadmin.ReqSharedSecretRegister{Username: "operator", Password: "pw-operator"})
		mustOK(t, err, "shared-secret registration")
		who, err := newClient(t, srv, resp.UserID, resp.AccessToken).Whoami(testCtx(t))
		mustOK(t, err, "whoami with shared-secret token")
		if who.UserID != userID("operator") {
			t.Errorf("whoami = %s, want %s", who.UserID, userID("operator"))
		}
		_, err = admin.SharedSecretRegister(testCtx(t), "wrong secret", synapseadmin.ReqSharedSecretRegister{Username: "forger", Password: "pw-forger"})
		if err == nil {
			t.Errorf("registration with a wrong shared secret succeeded")
		}
		_, err = anon.Login(testCtx(t), passwordLogin("forger", "pw-forger"))
		expectMatrixError(t, err, http.StatusForbidden, "M_FORBIDDEN")
	})
	t.Run("RegisterCommand", func(t *testing.T) {
		run := func(name string) ([]byte, error) {
			return exec.CommandContext(testCtx(t), binPath, "register", "--config", srv.ConfigPath,
				"--user", name, "--password", "pw-"+name, "--admin").CombinedOutput()
		}
		if out, err := run("cliuser"); err != nil {
			t.Fatalf("firebreak register: %v\n%s", err, out)
		}
		loginAs(t, srv, "cliuser", "pw-cliuser")
		if out, err := run("cliuser"); err == nil {
			t.Errorf("firebreak register of an existing user succeeded:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(srv.DataDir, "registration_shared_secret")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the configured secret was copied to the data directory (%v)", err)
		}
	})
}

// TestGeneratedSharedSecret: without a configured secret the server makes one, leaves it in
// its data directory for its owner alone, and `firebreak register` uses it.
func TestGeneratedSharedSecret(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{DisableRegistration: true, GeneratedSecret: true})
	info, err := os.Stat(filepath.Join(srv.DataDir, "registration_shared_secret"))
	if err != nil || info.Mode().Perm() != 0o600 || info.Size() == 0 {
		t.Fatalf("the generated secret's file: %v, %v", info, err)
	}
	out, err := exec.CommandContext(testCtx(t), binPath, "register", "--config", srv.ConfigPath,
		"--user", "first", "--password", "pw-first").CombinedOutput()
	if err != nil {
		t.Fatalf("firebreak register with the generated secret: %v\n%s", err, out)
	}
	loginAs(t, srv, "first", "pw-first")
}

// TestRateLimit: a flood of messages is cut off with 429 M_LIMIT_EXCEEDED
// and retry_after_ms, and the refused message is not stored.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{RCMessage: &rateLimit{PerSecond: 0.1, BurstCount: 3}})
	alice := registerUser(t, srv, "alice")
	room := sharedRoom(t, alice)
	for i := range 10 {
		body := fmt.Sprintf("flood %d", i)
		_, err := alice.SendText(testCtx(t), room, body)
		if err == nil {
			continue
		}
		respErr := expectMatrixError(t, err, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
		if ms, ok := respErr.ExtraData["retry_after_ms"].(float64); !ok || ms <= 0 {
			t.Errorf("429 body has retry_after_ms %v, want a positive number", respErr.ExtraData["retry_after_ms"])
		} else if header := retryAfter(err); header != strconv.Itoa(int(math.Ceil(ms/1000))) {
			t.Errorf("429 has Retry-After %q, want retry_after_ms %v in whole seconds", header, ms)
		}
		events, _ := roomMessages(t, alice, room, alice.syncToken(t), "", mautrix.DirectionBackward, nil, 50)
		if slices.Contains(bodies(events), body) {
			t.Errorf("rate-limited message %q is in the history", body)
		}
		return
	}
	t.Fatalf("10 messages at once passed a limit of burst 3, 0.1/s")
}

// retryAfter is the Retry-After header of a refused request.
func retryAfter(err error) string {
	var httpErr mautrix.HTTPError
	if !errors.As(err, &httpErr) || httpErr.Response == nil {
		return ""
	}
	return httpErr.Response.Header.Get("Retry-After")
}

// TestWritesHeldInMemoryAreLimited: account data, tags and profile changes (a member event in
// every joined room) spend the same per-user budget as sends; every node keeps them in memory.
func TestWritesHeldInMemoryAreLimited(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{RCMessage: &rateLimit{PerSecond: 0.1, BurstCount: 3}})
	alice := registerUser(t, srv, "alice")
	writes := []func(i int) error{
		func(i int) error {
			return alice.SetAccountData(testCtx(t), fmt.Sprintf("x.flood.%d", i), map[string]int{"i": i})
		},
		func(i int) error { return alice.SetDisplayName(testCtx(t), fmt.Sprintf("Alice %d", i)) },
	}
	for n, write := range writes {
		limited := false
		for i := 0; i < 10 && !limited; i++ {
			if err := write(i); err != nil {
				expectMatrixError(t, err, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
				limited = true
			}
		}
		if !limited {
			t.Errorf("write %d: 10 at once passed a limit of burst 3, 0.1/s", n)
		}
	}
}

// TestSharedSecretRegistrationRateLimit: a shared-secret registration costs one turn of the
// registration limit (its nonce), so a burst of 2 registers two accounts and refuses the third
// with 429 M_LIMIT_EXCEEDED.
func TestSharedSecretRegistrationRateLimit(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{RCRegistration: &rateLimit{PerSecond: 0.01, BurstCount: 2}})
	admin := &synapseadmin.Client{Client: newClient(t, srv, "", "")}
	for i := range 2 {
		_, err := admin.SharedSecretRegister(testCtx(t), sharedSecret, synapseadmin.ReqSharedSecretRegister{
			Username: fmt.Sprintf("limited%d", i), Password: "pw-limited"})
		mustOK(t, err, fmt.Sprintf("shared-secret registration %d of a burst of 2", i+1))
	}
	_, err := admin.SharedSecretRegister(testCtx(t), sharedSecret, synapseadmin.ReqSharedSecretRegister{
		Username: "limited2", Password: "pw-limited"})
	expectMatrixError(t, err, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
}

// TestSharedSecretGuessesAreLimited: a POST with a made-up nonce takes a turn of the
// registration limit, so a flood of them is cut off with 429 (and stores nothing).
func TestSharedSecretGuessesAreLimited(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{RCRegistration: &rateLimit{PerSecond: 0.01, BurstCount: 2}})
	guess := []byte(`{"nonce":"made-up","username":"guesser","password":"pw-guesser","mac":"00"}`)
	for range 2 {
		rawRequest(t, "POST", srv.URL+"/_synapse/admin/v1/register", "", guess).expectError(t, http.StatusBadRequest, "M_UNKNOWN")
	}
	rawRequest(t, "POST", srv.URL+"/_synapse/admin/v1/register", "", guess).expectError(t, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
}

// TestLoginRateLimits: behind a proxy (x_forwarded) each client address has its own rc_login
// bucket; wrong passwords for one account are limited across addresses; and a step of
// user-interactive auth takes a turn only when it checks a password.
func TestLoginRateLimits(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{RCLogin: &rateLimit{PerSecond: 0.01, BurstCount: 3}, XForwarded: true})
	loginFrom := func(addr, localpart, password string) rawResponse {
		body, _ := json.Marshal(passwordLogin(localpart, password))
		return rawRequestWith(t, "POST", clientURL(srv, "v3/login"), "", body,
			http.Header{"X-Forwarded-For": {"203.0.113.7, " + addr}})
	}
	var users []*user
	for range 4 {
		users = append(users, registerUser(t, srv, "limited"))
	}
	t.Run("PerForwardedAddress", func(t *testing.T) {
		for i, u := range users {
			loginFrom(fmt.Sprintf("198.51.100.%d", i+1), u.Localpart, u.Password).expectOK(t)
		}
	})
	t.Run("WrongPasswordsPerAccount", func(t *testing.T) {
		for i := range 3 {
			loginFrom(fmt.Sprintf("192.0.2.%d", i+1), users[0].Localpart, "wrong").expectError(t, http.StatusForbidden, "M_FORBIDDEN")
		}
		loginFrom("192.0.2.9", users[0].Localpart, "wrong").expectError(t, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	})
	t.Run("ParallelGuessesPerAccount", func(t *testing.T) {
		statuses := make([]int, 12)
		var wg sync.WaitGroup
		for i := range statuses {
			wg.Go(func() { statuses[i] = loginFrom(fmt.Sprintf("192.0.2.%d", 100+i), users[2].Localpart, "wrong").Status })
		}
		wg.Wait()
		if checked := len(statuses) - countOf(statuses, http.StatusTooManyRequests); checked > 3 {
			t.Errorf("%d of 12 parallel wrong guesses were checked against a burst of 3: %v", checked, statuses)
		}
	})
	t.Run("ChallengesTakeNoTurn", func(t *testing.T) {
		u, url := users[1], clientURL(srv, "v3/account/password")
		for range 5 {
			if resp := rawRequest(t, "POST", url, u.AccessToken, []byte(`{"new_password":"pw-new"}`)); resp.Status != http.StatusUnauthorized {
				t.Fatalf("password change without auth: %d %s, want 401 with UIA flows", resp.Status, resp.Raw)
			}
		}
		err := withPasswordAuth(t, u, http.MethodPost, u.BuildClientURL("v3", "account", "password"),
			map[string]any{"new_password": "pw-new", "logout_devices": false})
		mustOK(t, err, "password change after five challenges")
	})
}

// TestUploadLimit: an upload over max_upload_size is refused with 413 M_TOO_LARGE, one under it
// taken; the limit is the media's own, not max_request_body_size's.
func TestUploadLimit(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{MaxUploadSize: 2 << 20})
	alice := registerUser(t, srv, "alice")
	_, err := alice.UploadBytes(testCtx(t), bytes.Repeat([]byte("x"), 3<<20), "application/octet-stream")
	expectMatrixError(t, err, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	_, err = alice.UploadBytes(testCtx(t), bytes.Repeat([]byte("x"), 3<<19), "application/octet-stream")
	mustOK(t, err, "an upload over max_request_body_size and under max_upload_size")
}

func countOf[T comparable](s []T, v T) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// futureToken is the user's current sync token with one part moved far past anything stored
// (0: every room position, 1: receipts, 2: account data): a token no node handed out.
func futureToken(t *testing.T, u *user, part int) string {
	t.Helper()
	current := u.syncToken(t)
	shards := strings.Count(strings.Split(current, "_")[1], ".") + 1
	tok, err := syncer.ParseToken(current, shards)
	if err != nil {
		t.Fatalf("parse %q: %v", current, err)
	}
	switch part {
	case 0:
		for i := range tok.Rooms {
			tok.Rooms[i] += 1_000_000
		}
	case 1:
		tok.Receipts += 1_000_000
	case 2:
		tok.AccountData += 1_000_000
	}
	return tok.String()
}

// manyInitialState is a createRoom body with n initial state events: with the room's other
// first events, more than one atomic batch takes when n is 1,000.
func manyInitialState(n int) []byte {
	state := make([]map[string]any, n)
	for i := range state {
		state[i] = map[string]any{"type": "org.example.item", "state_key": fmt.Sprint(i), "content": map[string]any{}}
	}
	body, _ := json.Marshal(map[string]any{"initial_state": state})
	return body
}
