package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/firebreak/firebreak/internal/matrixclient"
	"github.com/valyala/fasthttp"
)

// The Client-Server API calls the bench makes, and nothing else, so it runs against any
// homeserver.

const clientPrefix = matrixclient.V3

func (c *client) createRoom(ctx context.Context, name string) (string, error) {
	var out struct {
		RoomID string `json:"room_id"`
	}
	// A public room lets members join without an invite each: half the setup events.
	body := map[string]any{"preset": "public_chat", "name": name}
	if err := c.do(ctx, http.MethodPost, clientPrefix+"/createRoom", nil, body, &out); err != nil {
		return "", err
	}
	return out.RoomID, nil
}

func (c *client) join(ctx context.Context, roomID string) error {
	return c.do(ctx, http.MethodPost, clientPrefix+"/join/"+esc(roomID), nil, map[string]any{}, nil)
}

// syncFilter keeps syncs to what the bench reads: timelines with enough room for a burst,
// members loaded lazily (large rooms), no presence.
const syncFilter = `{"room":{"timeline":{"limit":100},"state":{"lazy_load_members":true}},` +
	`"presence":{"types":[]},"account_data":{"types":[]}}`

// uploadFilter stores the sync filter, as real clients do, and returns its id.
func (c *client) uploadFilter(ctx context.Context) (string, error) {
	var out struct {
		FilterID string `json:"filter_id"`
	}
	err := c.do(ctx, http.MethodPost, clientPrefix+"/user/"+esc(c.userID)+"/filter", nil, json.RawMessage(syncFilter), &out)
	return out.FilterID, err
}

// benchMark is what the bench puts in every message it sends, to find it again in syncs.
// The time is in microseconds: event JSON only allows integers up to 2^53 (canonical JSON),
// which nanoseconds since 1970 exceed.
type benchMark struct {
	Run  string `json:"run"`
	N    uint64 `json:"n"`     // the message's number in this run
	TSus int64  `json:"ts_us"` // unix µs just before the PUT
}

type messageContent struct {
	MsgType string    `json:"msgtype"`
	Body    string    `json:"body"`
	Bench   benchMark `json:"fb_bench"`
}

// send PUTs one m.room.message through fc (newSendClient).
func (c *client) send(ctx context.Context, fc *fasthttp.Client, roomID, txnID string, content messageContent) error {
	path := clientPrefix + "/rooms/" + esc(roomID) + "/send/m.room.message/" + esc(txnID)
	return c.putJSON(ctx, fc, path, content)
}

// syncResponse is the part of a /sync response the bench reads.
type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events  []syncEvent `json:"events"`
				Limited bool        `json:"limited"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

type syncEvent struct {
	Type    string `json:"type"`
	Sender  string `json:"sender"`
	Content struct {
		Bench *benchMark `json:"fb_bench"`
	} `json:"content"`
}

// sync makes one /sync call; timeout 0 returns at once.
func (c *client) sync(ctx context.Context, since, filterID string, timeout time.Duration) (*syncResponse, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if filterID != "" {
		q.Set("filter", filterID)
	}
	q.Set("timeout", strconv.FormatInt(timeout.Milliseconds(), 10))
	var out syncResponse
	if err := c.do(ctx, http.MethodGet, clientPrefix+"/sync", q, nil, &out); err != nil {
		return nil, err
	}
	if out.NextBatch == "" {
		return nil, fmt.Errorf("sync: response has no next_batch")
	}
	return &out, nil
}
