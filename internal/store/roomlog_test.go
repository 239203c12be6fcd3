package store

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestReadPubAck(t *testing.T) {
	tests := []struct {
		name    string
		ack     string
		seq     uint64
		wantErr error // matched with errors.Is; nil: no error
		anyErr  bool  // an error not mapped onto the store's own
	}{
		{"stored", `{"stream":"FB_ROOMS_3","seq":42}`, 42, nil, false},
		{"already stored", `{"stream":"FB_ROOMS_3","seq":41,"duplicate":true}`, 41, nil, false},
		{"batch committed", `{"stream":"FB_ROOMS_3","seq":50,"batch":"b1","count":8}`, 50, nil, false},
		{"head moved", `{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 40"}}`, 0, ErrConflict, false},
		{"batch cut short", `{"error":{"code":400,"err_code":10176,"description":"batch incomplete"}}`, 0, ErrUnavailable, false},
		{"earlier try in process", `{"error":{"code":409,"err_code":10158,"description":"duplicate message id is in process"}}`, 0, ErrUnavailable, false},
		{"no quorum yet", `{"error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}`, 0, ErrUnavailable, false},
		{"compare not ready", `{"error":{"code":503,"err_code":10163,"description":"expected last sequence per subject temporarily unavailable"}}`, 0, ErrUnavailable, false},
		{"other refusal", `{"error":{"code":400,"err_code":10054,"description":"maximum messages exceeded"}}`, 0, nil, true},
		{"no sequence", `{"stream":"FB_ROOMS_3"}`, 0, nil, true},
		{"no stream", `{"seq":7}`, 0, nil, true},
		{"not JSON", `+OK`, 0, nil, true},
		{"empty", ``, 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seq, err := readPubAck([]byte(tt.ack))
			switch {
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("error %v, want %v", err, tt.wantErr)
			case tt.anyErr && err == nil:
				t.Errorf("no error, sequence %d", seq)
			case tt.wantErr == nil && !tt.anyErr && (err != nil || seq != tt.seq):
				t.Errorf("got %d, %v; want %d", seq, err, tt.seq)
			}
		})
	}
	_, err := readPubAck([]byte(`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 40"}}`))
	if c := (*ConflictError)(nil); !errors.As(err, &c) || c.Head != 40 {
		t.Errorf("conflict %v does not name the head at 40", err)
	}
	_, err = readPubAck([]byte(`{"error":{"code":400,"err_code":10054,"description":"maximum messages exceeded"}}`))
	if a := (*jetstream.APIError)(nil); !errors.As(err, &a) || a.ErrorCode != 10054 {
		t.Errorf("refusal %v lost JetStream's error code", err)
	}
}

// TestReadMsgGet: a leader's answer to a message get is the message, none, or, while the
// stream has no leader, unavailable (tried again), never an error the API reports as a 500.
func TestReadMsgGet(t *testing.T) {
	tests := []struct {
		name    string
		answer  string
		seq     uint64
		wantErr error
	}{
		{"found", `{"message":{"subject":"$KV.b.k","seq":7,"data":"eA==","time":"2026-11-28T16:00:00.5Z"}}`, 7, nil},
		{"none", `{"error":{"code":404,"err_code":10037,"description":"no message found"}}`, 0, ErrNotFound},
		{"electing", `{"error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}`, 0, ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := readMsgGet([]byte(tt.answer))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && (err != nil || m.Seq != tt.seq || string(m.Data) != "x" || m.Time.Hour() != 16)) {
				t.Errorf("got %+v, %v; want seq %d, %v", m, err, tt.seq, tt.wantErr)
			}
		})
	}
	// A direct read's status answer comes as a plain error from nats.go.
	if err := translate(errors.New("nats: JetStream system temporarily unavailable")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("a direct read's 503: %v, want ErrUnavailable", err)
	}
}
