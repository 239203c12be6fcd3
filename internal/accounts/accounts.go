// Package accounts owns who can use the server: accounts and their passwords, devices, access
// tokens and profiles. Everything is kept in JetStream key-value buckets.
package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/firebreak/firebreak/internal/store"
)

var (
	ErrInvalidUsername = errors.New("user name may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+'")
	ErrUserInUse       = errors.New("user name is taken")
	ErrBadLogin        = errors.New("invalid user name or password")
	ErrUnknownToken    = errors.New("unknown access token")
	ErrNotFound        = errors.New("not found")
	ErrWeakPassword    = errors.New("password must be between 1 and 512 characters")
	ErrUserIDTooLong   = errors.New("user id may not be longer than 255 characters")
	ErrReservedName    = errors.New("user name may not begin with '_' (kept for bridges), nor be a full user id")
	ErrDeactivated     = errors.New("this account has been deactivated")
)

// Account is what is stored per user.
type Account struct {
	UserID       string `json:"user_id"`
	PasswordHash string `json:"password_hash"`
	CreatedTS    int64  `json:"created_ts"`
	Admin        bool   `json:"admin,omitempty"`
	Deactivated  bool   `json:"deactivated,omitempty"`
	DisplayName  string `json:"displayname,omitempty"`
	AvatarURL    string `json:"avatar_url,omitempty"`
}

// Device is one logged-in client of a user.
type Device struct {
	DeviceID    string `json:"device_id"`
	DisplayName string `json:"display_name,omitempty"`
	LastSeenTS  int64  `json:"last_seen_ts,omitempty"`
	LastSeenIP  string `json:"last_seen_ip,omitempty"`
	TokenHash   string `json:"token_hash"`
}

// Session is what a login or registration hands the client.
type Session struct {
	UserID      string
	DeviceID    string
	AccessToken string
}

// Service is the accounts API over the store.
type Service struct {
	st         *store.Store
	serverName string
	tokens     *tokenCache
	activity   activity
	// deviceDeleted hears of each device logged out, to remove what else it left (its keys).
	deviceDeleted func(ctx context.Context, userID, deviceID string)
}

// New returns the accounts service for users of serverName.
func New(st *store.Store, serverName string) *Service {
	return &Service{st: st, serverName: serverName, tokens: newTokenCache(),
		deviceDeleted: func(context.Context, string, string) {}}
}

// OnDeviceDeleted sets who hears of each device logged out.
func (s *Service) OnDeviceDeleted(fn func(ctx context.Context, userID, deviceID string)) {
	s.deviceDeleted = fn
}

var localpartRE = regexp.MustCompile(`^[a-z0-9._=\-/+]+$`)

// UserID turns a localpart or a full user id into this server's full user id.
func (s *Service) UserID(name string) (string, error) {
	local := name
	if strings.HasPrefix(name, "@") {
		l, server, ok := strings.Cut(name[1:], ":")
		if !ok || server != s.serverName {
			return "", ErrInvalidUsername
		}
		local = l
	}
	local = strings.ToLower(local)
	id := "@" + local + ":" + s.serverName
	switch {
	case !localpartRE.MatchString(local):
		return "", ErrInvalidUsername
	case len(id) > 255:
		return "", ErrUserIDTooLong
	}
	return id, nil
}

// newUserID is the user id a new account named localpart gets: a bare user name, as the
// spec's registration takes, not beginning with '_', which Synapse keeps for bridges'
// (application services') users.
func (s *Service) newUserID(localpart string) (string, error) {
	if strings.HasPrefix(localpart, "@") || strings.HasPrefix(localpart, "_") {
		return "", ErrReservedName
	}
	return s.UserID(localpart)
}

// Register creates an account. The user name is claimed atomically, so two nodes registering
// the same name at once give one account.
func (s *Service) Register(ctx context.Context, localpart, password string, admin bool) (string, error) {
	userID, err := s.newUserID(localpart)
	if err != nil {
		return "", err
	}
	if len(password) == 0 || len(password) > 512 {
		return "", ErrWeakPassword
	}
	hash, err := hashPassword(password)
	if err != nil {
		return "", err
	}
	acct := Account{UserID: userID, PasswordHash: hash, CreatedTS: time.Now().UnixMilli(), Admin: admin,
		DisplayName: strings.TrimPrefix(strings.SplitN(userID, ":", 2)[0], "@")}
	b, _ := json.Marshal(acct)
	if _, err := s.st.Create(ctx, store.BucketAccounts, store.Key(userID), b); err != nil {
		if errors.Is(err, store.ErrExists) {
			return "", ErrUserInUse
		}
		return "", err
	}
	return userID, nil
}

// Available says whether a user name can still be registered.
func (s *Service) Available(ctx context.Context, localpart string) error {
	userID, err := s.newUserID(localpart)
	if err != nil {
		return err
	}
	if _, err := s.Account(ctx, userID); err == nil {
		return ErrUserInUse
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}

// Account loads a user's account.
func (s *Service) Account(ctx context.Context, userID string) (Account, error) {
	acct, _, err := s.account(ctx, userID)
	return acct, err
}

func (s *Service) account(ctx context.Context, userID string) (Account, uint64, error) {
	var acct Account
	b, rev, err := s.st.Get(ctx, store.BucketAccounts, store.Key(userID))
	if errors.Is(err, store.ErrNotFound) {
		return acct, 0, ErrNotFound
	} else if err != nil {
		return acct, 0, err
	}
	return acct, rev, json.Unmarshal(b, &acct)
}

// updateAccount applies change to the stored account with compare-and-set, retrying when
// another node changed the account in between.
func (s *Service) updateAccount(ctx context.Context, userID string, change func(*Account)) error {
	_, err := s.st.Modify(ctx, store.BucketAccounts, store.Key(userID), changeJSON(change))
	return err
}

// CheckPassword reports ErrBadLogin unless password is the user's, and ErrDeactivated for
// the right password of a deactivated account (only then: the answer does not tell a
// guesser which accounts are closed).
func (s *Service) CheckPassword(ctx context.Context, userID, password string) error {
	_, err := s.checkPassword(ctx, userID, password)
	return err
}

// checkPassword is CheckPassword that also returns the password's stored hash.
func (s *Service) checkPassword(ctx context.Context, userID, password string) (hash string, err error) {
	acct, err := s.Account(ctx, userID)
	if errors.Is(err, ErrNotFound) {
		// Hash anyway so a missing user answers as slowly as a wrong password.
		_, _ = hashPassword(password)
		return "", ErrBadLogin
	} else if err != nil {
		return "", err
	}
	switch {
	case !checkPassword(acct.PasswordHash, password):
		return "", ErrBadLogin
	case acct.Deactivated:
		return "", ErrDeactivated
	}
	return acct.PasswordHash, nil
}

// Login checks a password and opens a session on a new or existing device.
func (s *Service) Login(ctx context.Context, userID, password, deviceID, deviceName string) (Session, error) {
	hash, err := s.checkPassword(ctx, userID, password)
	if err != nil {
		return Session{}, err
	}
	return s.openSession(ctx, userID, deviceID, deviceName, hash)
}

// NewSession issues a fresh access token for the device, creating the device if needed and
// revoking the device's previous token.
func (s *Service) NewSession(ctx context.Context, userID, deviceID, deviceName string) (Session, error) {
	return s.openSession(ctx, userID, deviceID, deviceName, "")
}

// openSession is NewSession for a login that checked the password whose hash it names ("" for
// none): should the password change before the session is open, the session is taken back.
func (s *Service) openSession(ctx context.Context, userID, deviceID, deviceName, passwordHash string) (Session, error) {
	if deviceID == "" {
		deviceID = randomID(10, true)
	}
	for {
		session, err := s.newSession(ctx, userID, deviceID, deviceName, passwordHash)
		if !errors.Is(err, errRaced) {
			return session, err
		}
	}
}

// newSession is one try of openSession: errRaced when another login or a logout of the same
// device came between its read and its write of the device.
func (s *Service) newSession(ctx context.Context, userID, deviceID, deviceName, passwordHash string) (Session, error) {
	dev, rev, err := s.device(ctx, userID, deviceID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Session{}, err
	}
	token := "fb_" + randomID(32, false)
	oldHash := dev.TokenHash
	dev.DeviceID = deviceID
	if deviceName != "" {
		dev.DisplayName = deviceName
	}
	dev.TokenHash = hashToken(token)
	dev.LastSeenTS = time.Now().UnixMilli()
	rec, _ := json.Marshal(tokenRecord{UserID: userID, DeviceID: deviceID})
	// Write the token first: a device that names a token always has one.
	if _, err := s.st.Put(ctx, store.BucketTokens, dev.TokenHash, rec); err != nil {
		return Session{}, err
	}
	if err := s.writeDevice(ctx, userID, dev, rev); err != nil {
		_ = s.st.Delete(ctx, store.BucketTokens, dev.TokenHash)
		return Session{}, err
	}
	if oldHash != "" {
		_ = s.revokeToken(ctx, oldHash)
		s.announceSessionsEnded(userID) // long polls holding the old token end now
	}
	// A deactivation or a password change that began after this login checked the password
	// has logged out every device it listed, perhaps before this one was written: read the
	// account once the device is, and take the session back.
	if err := s.stillOpen(ctx, userID, passwordHash); err != nil {
		ctx, cancel := Detached(ctx)
		defer cancel()
		_ = s.DeleteDevice(ctx, userID, deviceID)
		return Session{}, err
	}
	return Session{UserID: userID, DeviceID: deviceID, AccessToken: token}, nil
}

// stillOpen reports ErrDeactivated once the account is closed, and ErrBadLogin once its
// password is no longer the one whose hash a login checked ("" for none).
func (s *Service) stillOpen(ctx context.Context, userID, passwordHash string) error {
	acct, err := s.Account(ctx, userID)
	switch {
	case err != nil:
		return err
	case acct.Deactivated:
		return ErrDeactivated
	case passwordHash != "" && acct.PasswordHash != passwordHash:
		return ErrBadLogin
	}
	return nil
}

type tokenRecord struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
}

// Authenticate finds the user and device an access token belongs to.
func (s *Service) Authenticate(ctx context.Context, token string) (userID, deviceID string, err error) {
	if token == "" {
		return "", "", ErrUnknownToken
	}
	hash := hashToken(token)
	if t, ok := s.tokens.get(hash); ok {
		return t.userID, t.deviceID, nil
	}
	b, _, err := s.st.Get(ctx, store.BucketTokens, hash)
	if errors.Is(err, store.ErrNotFound) {
		return "", "", ErrUnknownToken
	} else if err != nil {
		return "", "", err
	}
	var rec tokenRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return "", "", err
	}
	// A token counts only while its device names it and its account is open. Every
	// revocation goes through the device (logout, a new login on it, a password change), so a
	// token its device does not name, one left by a node that stopped between the two writes
	// of a login, must not work either; nor one a deactivation cut short did not reach.
	if dev, err := s.Device(ctx, rec.UserID, rec.DeviceID); errors.Is(err, ErrNotFound) || (err == nil && dev.TokenHash != hash) {
		return "", "", ErrUnknownToken
	} else if err != nil {
		return "", "", err
	}
	if err := s.stillOpen(ctx, rec.UserID, ""); errors.Is(err, ErrDeactivated) || errors.Is(err, ErrNotFound) {
		return "", "", ErrUnknownToken
	} else if err != nil {
		return "", "", err
	}
	s.tokens.put(hash, rec.UserID, rec.DeviceID)
	return rec.UserID, rec.DeviceID, nil
}

// revokeToken deletes a token; this node stops accepting it at once, others as soon as their
// watch of the tokens bucket delivers the deletion. The cache forgets it even if the deletion
// reports an error: one that timed out may still have been stored.
func (s *Service) revokeToken(ctx context.Context, hash string) error {
	s.tokens.revoke(hash)
	return s.st.Delete(ctx, store.BucketTokens, hash)
}

// hashToken is how tokens are stored: a leaked bucket does not leak usable tokens. Tokens
// carry 256 random bits, so a fast hash is enough.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func randomID(n int, upper bool) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	if upper {
		const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		for i := range b {
			b[i] = letters[int(b[i])%len(letters)]
		}
		return string(b)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// RandomString returns n random bytes as URL-safe text, for ids and secrets.
func RandomString(n int) string { return randomID(n, false) }
