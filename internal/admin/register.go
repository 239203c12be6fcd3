// Package admin holds operator tools that talk to a running Firebreak over its HTTP API.
package admin

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"

	"github.com/firebreak/firebreak/internal/accounts"
	"github.com/firebreak/firebreak/internal/matrixclient"
)

// Account is what a registration returns: the new user and its first session.
type Account struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
	DeviceID    string `json:"device_id"`
}

// Register creates an account through the shared-secret registration endpoint, the way
// Synapse's register_new_matrix_user does. The operator's command and the load generator
// both use it; hc is the caller's HTTP client.
func Register(ctx context.Context, hc *http.Client, baseURL, secret, username, password string, isAdmin bool) (Account, error) {
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if err := call(ctx, hc, http.MethodGet, baseURL+"/_synapse/admin/v1/register", nil, &nonce); err != nil {
		return Account{}, err
	}
	body := map[string]any{
		"nonce": nonce.Nonce, "username": username, "password": password, "admin": isAdmin,
		"mac": hex.EncodeToString(accounts.RegistrationMAC(secret, nonce.Nonce, username, password, isAdmin, "")),
	}
	var acct Account
	err := call(ctx, hc, http.MethodPost, baseURL+"/_synapse/admin/v1/register", body, &acct)
	return acct, err
}

func call(ctx context.Context, hc *http.Client, method, url string, body, out any) error {
	err := matrixclient.Do(ctx, hc, url, "", method, "", nil, body, out)
	var me *matrixclient.Error
	if err != nil && !errors.As(err, &me) {
		return fmt.Errorf("is the homeserver running? %w", err)
	}
	return err
}
