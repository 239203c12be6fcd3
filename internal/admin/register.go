// Package admin holds operator tools that talk to a running Firebreak over its HTTP API.
package admin

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/firebreak/firebreak/internal/accounts"
)

// Account is what Register creates.
type Account struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
	DeviceID    string `json:"device_id"`
}

// Register creates an account through the shared-secret registration endpoint, the way
// Synapse's register_new_matrix_user does.
func Register(ctx context.Context, baseURL, secret, username, password string, isAdmin bool) (Account, error) {
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if err := call(ctx, http.MethodGet, baseURL+"/_synapse/admin/v1/register", nil, &nonce); err != nil {
		return Account{}, err
	}
	body := map[string]any{
		"nonce": nonce.Nonce, "username": username, "password": password, "admin": isAdmin,
		"mac": hex.EncodeToString(accounts.RegistrationMAC(secret, nonce.Nonce, username, password, isAdmin, "")),
	}
	var acct Account
	err := call(ctx, http.MethodPost, baseURL+"/_synapse/admin/v1/register", body, &acct)
	return acct, err
}

func call(ctx context.Context, method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("is the homeserver running? %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Code string `json:"errcode"`
			Msg  string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return fmt.Errorf("%s %s: %d %s %s", method, url, resp.StatusCode, e.Code, e.Msg)
	}
	return json.Unmarshal(b, out)
}
