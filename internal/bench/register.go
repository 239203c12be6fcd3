package bench

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/firebreak/firebreak/internal/accounts"
	"github.com/firebreak/firebreak/internal/matrixclient"
)

// session is what a registration returns.
type session struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
	DeviceID    string `json:"device_id"`
}

// register creates an account and logs it in: through Synapse's shared-secret admin API when
// a secret is given (works with public registration off), else through /register with the
// m.login.dummy stage.
func register(ctx context.Context, c *client, secret, username, password string) error {
	var s session
	var err error
	if secret != "" {
		s, err = registerShared(ctx, c, secret, username, password)
	} else {
		s, err = registerDummy(ctx, c, username, password)
	}
	if err != nil {
		return err
	}
	c.userID, c.deviceID, c.token = s.UserID, s.DeviceID, s.AccessToken
	return nil
}

func registerShared(ctx context.Context, c *client, secret, username, password string) (session, error) {
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if err := c.do(ctx, http.MethodGet, "/_synapse/admin/v1/register", nil, nil, &nonce); err != nil {
		return session{}, err
	}
	body := map[string]any{
		"nonce": nonce.Nonce, "username": username, "password": password, "admin": false,
		"mac": hex.EncodeToString(accounts.RegistrationMAC(secret, nonce.Nonce, username, password, false, "")),
	}
	var s session
	err := c.do(ctx, http.MethodPost, "/_synapse/admin/v1/register", nil, body, &s)
	return s, err
}

// registerDummy does the user-interactive dance: the first POST gets a 401 with a session
// id, the second completes the m.login.dummy stage in that session.
func registerDummy(ctx context.Context, c *client, username, password string) (session, error) {
	body := map[string]any{"username": username, "password": password, "initial_device_display_name": "firebreak bench"}
	var s session
	err := c.do(ctx, http.MethodPost, clientPrefix+"/register", nil, body, &s)
	var ae *matrixclient.Error
	if err == nil || !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		return s, err
	}
	var uia struct {
		Session string `json:"session"`
	}
	_ = json.Unmarshal(ae.Body, &uia)
	body["auth"] = map[string]any{"type": "m.login.dummy", "session": uia.Session}
	err = c.do(ctx, http.MethodPost, clientPrefix+"/register", nil, body, &s)
	return s, err
}
