package drill

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/firebreak/firebreak/internal/matrixclient"
)

// The drill speaks only the Client-Server API, with plain JSON over net/http, so it sees the
// homeserver exactly as a client does.

// apiError is a non-200 answer.
type apiError = matrixclient.Error

// session is a logged-in device.
type session struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	Token    string `json:"access_token"`
}

// api sends requests as one session (or none) to whichever node the caller names.
type api struct {
	hc    *http.Client
	token string
}

// call sends one request to base+path and decodes a 200's body into out.
func (a api) call(ctx context.Context, base, method, path string, q url.Values, body, out any) error {
	return matrixclient.Do(ctx, a.hc, base, a.token, method, path, q, body, out)
}

const v3 = matrixclient.V3

// register creates an account with the m.login.dummy stage in one request.
func (a api) register(ctx context.Context, base, user, password string) (session, error) {
	var s session
	err := a.call(ctx, base, http.MethodPost, v3+"/register", nil, map[string]any{
		"username": user, "password": password, "auth": map[string]string{"type": "m.login.dummy"},
	}, &s)
	return s, err
}

// login opens a new device for an existing account.
func (a api) login(ctx context.Context, base, user, password string) (session, error) {
	var s session
	err := a.call(ctx, base, http.MethodPost, v3+"/login", nil, map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": user},
		"password":   password,
	}, &s)
	return s, err
}

func (a api) createRoom(ctx context.Context, base string, body map[string]any) (string, error) {
	var out struct {
		RoomID string `json:"room_id"`
	}
	err := a.call(ctx, base, http.MethodPost, v3+"/createRoom", nil, body, &out)
	return out.RoomID, err
}

func (a api) join(ctx context.Context, base, roomID string) error {
	return a.call(ctx, base, http.MethodPost, v3+"/join/"+url.PathEscape(roomID), nil, map[string]any{}, nil)
}

// send PUTs a message with the client's transaction id and returns the event id.
func (a api) send(ctx context.Context, base, roomID, txn string, content any) (string, error) {
	var out struct {
		EventID string `json:"event_id"`
	}
	path := fmt.Sprintf("%s/rooms/%s/send/m.room.message/%s", v3, url.PathEscape(roomID), url.PathEscape(txn))
	err := a.call(ctx, base, http.MethodPut, path, nil, content, &out)
	if err == nil && out.EventID == "" {
		err = fmt.Errorf("send answered 200 without an event_id")
	}
	return out.EventID, err
}

// clientEvent is the part of an event the drill looks at.
type clientEvent struct {
	EventID string `json:"event_id"`
	Sender  string `json:"sender"`
	Type    string `json:"type"`
	Content struct {
		Txn string `json:"fb_drill_txn"` // the sending client's transaction id, see messageContent
	} `json:"content"`
}

type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events    []clientEvent `json:"events"`
				Limited   bool          `json:"limited"`
				PrevBatch string        `json:"prev_batch"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

// syncFilter keeps sync responses small: a long timeline so gaps are rare, nothing else. It
// does not lazy-load members: with lazy_load_members every incremental sync answers at once
// with the user's own member event instead of waiting (a server bug at the time of writing),
// which would turn every long poll into a busy loop.
const syncFilter = `{"room":{"timeline":{"limit":200},"ephemeral":{"not_types":["*"]},"account_data":{"not_types":["*"]}},"presence":{"not_types":["*"]},"account_data":{"not_types":["*"]}}`

// sync long-polls for up to wait; an empty since asks for an initial sync.
func (a api) sync(ctx context.Context, base, since string, wait time.Duration) (*syncResponse, error) {
	q := url.Values{"filter": {syncFilter}, "timeout": {strconv.FormatInt(wait.Milliseconds(), 10)}}
	if since != "" {
		q.Set("since", since)
	}
	var out syncResponse
	err := a.call(ctx, base, http.MethodGet, v3+"/sync", q, nil, &out)
	return &out, err
}

type messagesResponse struct {
	Chunk []clientEvent `json:"chunk"`
	End   string        `json:"end"`
}

// messages reads one page of a room's history backwards from `from` (empty: the newest).
func (a api) messages(ctx context.Context, base, roomID, from string, limit int) (*messagesResponse, error) {
	q := url.Values{"dir": {"b"}, "limit": {strconv.Itoa(limit)}}
	if from != "" {
		q.Set("from", from)
	}
	var out messagesResponse
	err := a.call(ctx, base, http.MethodGet, v3+"/rooms/"+url.PathEscape(roomID)+"/messages", q, nil, &out)
	return &out, err
}

// newHTTPClient is shared by all simulated clients; per-request contexts bound every call.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     30 * time.Second,
	}}
}
