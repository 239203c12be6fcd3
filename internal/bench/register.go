package bench

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/firebreak/firebreak/internal/admin"
	"github.com/firebreak/firebreak/internal/matrixclient"
)

// register creates an account and logs it in: through Synapse's shared-secret admin API when
// a secret is given (works with public registration off), else through /register with the
// m.login.dummy stage.
func register(ctx context.Context, c *client, secret, username, password string) error {
	var s admin.Account
	var err error
	if secret != "" {
		s, err = admin.Register(ctx, c.hc, c.base, secret, username, password, false)
	} else {
		s, err = registerDummy(ctx, c, username, password)
	}
	if err != nil {
		return err
	}
	c.userID, c.deviceID, c.token = s.UserID, s.DeviceID, s.AccessToken
	return nil
}

// registerDummy does the user-interactive dance: the first POST gets a 401 with a session
// id, the second completes the m.login.dummy stage in that session.
func registerDummy(ctx context.Context, c *client, username, password string) (admin.Account, error) {
	body := map[string]any{"username": username, "password": password, "initial_device_display_name": "firebreak bench"}
	var s admin.Account
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
