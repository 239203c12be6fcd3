package api

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/firebreak/firebreak/internal/accounts"
	"github.com/firebreak/firebreak/internal/rooms"
	"github.com/firebreak/firebreak/internal/store"
)

// specVersions are the Client-Server API versions this server speaks. The r0 releases stay
// listed because older clients look for them and every r0 path is also routed.
var specVersions = []string{
	"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
	"v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11",
}

// roomVersions are the room versions createRoom accepts.
var roomVersions = []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}

// User-interactive authentication stages and the one login identifier type we accept.
const (
	stageDummy    = "m.login.dummy"
	stagePassword = "m.login.password"
	idUser        = "m.id.user"
)

// Length caps, counted in characters so non-Latin names get the same room as Latin ones
// (at most 4 bytes each, so storage stays bounded). Every member event repeats the display
// name, so it must stay far below the 64 KiB event limit.
const (
	maxNameLen      = 256  // display names of users and devices
	maxAvatarURLLen = 1000 // mxc:// URIs are short; this only stops abuse
	maxNonceLen     = 128  // ours are 32 characters; longer is never one of ours
)

// enabled is the {"enabled": bool} of a boolean capability.
type enabled struct {
	Enabled bool `json:"enabled"`
}

// versions answers GET /_matrix/client/versions.
func (srv *Server) versions(*http.Request, *session) (any, error) {
	return map[string]any{"versions": specVersions, "unstable_features": map[string]bool{}}, nil
}

// capabilities answers GET /capabilities.
func (srv *Server) capabilities(*http.Request, *session) (any, error) {
	available := make(map[string]string, len(roomVersions))
	for _, v := range roomVersions {
		available[v] = "stable"
	}
	return map[string]any{"capabilities": map[string]any{
		"m.change_password": enabled{true},
		"m.room_versions":   map[string]any{"default": srv.Config.DefaultRoomVersion, "available": available},
		"m.set_displayname": enabled{true},
		"m.set_avatar_url":  enabled{true},
		"m.3pid_changes":    enabled{false},
	}}, nil
}

// ---- User-interactive authentication ----

type uiaFlow struct {
	Stages []string `json:"stages"`
}

// uiaRequired is the 401 body of the User-Interactive Authentication API. It is an error so
// handlers can return it; writeError renders it as is because it has StatusCode. Code and
// Msg are set only when the client tried a stage and failed it, as the spec asks.
type uiaRequired struct {
	Flows   []uiaFlow      `json:"flows"`
	Params  map[string]any `json:"params"`
	Session string         `json:"session"`
	Code    string         `json:"errcode,omitempty"`
	Msg     string         `json:"error,omitempty"`
}

func (e *uiaRequired) Error() string {
	if e.Code != "" {
		return e.Code + ": " + e.Msg
	}
	return "authentication required: " + e.Flows[0].Stages[0]
}

// StatusCode tells writeError to send this body with 401 instead of mapping it.
func (e *uiaRequired) StatusCode() int { return http.StatusUnauthorized }

// uiaChallenge asks for one single-stage flow. Our stages are checked in the same request
// that completes them, so no session state is kept: the session id is echoed back when the
// client sent one, only so clients that track it stay happy. failure, when set, says why the
// attempted stage failed.
func uiaChallenge(stage, session, failure string) *uiaRequired {
	if session == "" {
		session = accounts.RandomString(16)
	}
	e := &uiaRequired{Flows: []uiaFlow{{Stages: []string{stage}}}, Params: map[string]any{}, Session: session}
	if failure != "" {
		e.Code, e.Msg = "M_FORBIDDEN", failure
	}
	return e
}

type userIdentifier struct {
	Type string `json:"type"`
	User string `json:"user"`
}

// credentials is the body of a password login, and also the "auth" object of a request
// protected by user-interactive authentication, which uses the same fields plus session.
// One flat type serves both because encoding/json names an embedded struct's fields after
// its Go type in type errors ("creds.password"), which clients should not see.
type credentials struct {
	Type       string          `json:"type"`
	Identifier *userIdentifier `json:"identifier"`
	User       string          `json:"user"` // deprecated form of identifier
	Password   string          `json:"password"`
	Session    string          `json:"session"`                     // auth objects only
	DeviceID   string          `json:"device_id"`                   // login only
	DeviceName string          `json:"initial_device_display_name"` // login only
}

// userName returns the user the credentials name, "" if they name none. Only m.id.user is
// supported: there are no third-party identifiers on this server.
func (c *credentials) userName() (string, error) {
	if c.Identifier == nil {
		return c.User, nil
	}
	if c.Identifier.Type != idUser {
		return "", errorf(http.StatusBadRequest, "M_UNKNOWN", "Unknown identifier type %q", c.Identifier.Type)
	}
	return c.Identifier.User, nil
}

// session is the auth object's session id; the object may be absent.
func (c *credentials) session() string {
	if c == nil {
		return ""
	}
	return c.Session
}

// requirePassword is the m.login.password stage for an authenticated caller: the caller's
// current password must come with the request, so a stolen access token alone cannot change
// the password or log other devices out.
//
// Only an attempt at the stage takes a turn of rc_login (per user, so a stolen token cannot
// be used to guess the password): the first request, which learns the stage, takes none.
func (srv *Server) requirePassword(ctx context.Context, s *session, auth *credentials) error {
	if auth == nil || auth.Type != stagePassword {
		return uiaChallenge(stagePassword, auth.session(), "")
	}
	if err := srv.limits.login.allow(s.UserID); err != nil {
		return err
	}
	name, err := auth.userName()
	if err != nil {
		return err
	}
	// The auth object may name the user; it must be the caller, not someone else.
	if id, idErr := srv.Accounts.UserID(name); name != "" && (idErr != nil || id != s.UserID) {
		err = accounts.ErrBadLogin
	} else {
		err = srv.guessLimited(s.UserID, func() error { return srv.Accounts.CheckPassword(ctx, s.UserID, auth.Password) })
	}
	if errors.Is(err, accounts.ErrBadLogin) {
		return uiaChallenge(stagePassword, auth.Session, "Invalid username or password")
	}
	return err
}

// ---- Login and registration ----

// loginResponse is what login and every kind of registration answer. The token and device
// are left out when registration inhibited the login.
type loginResponse struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token,omitempty"`
	DeviceID    string `json:"device_id,omitempty"`
	HomeServer  string `json:"home_server"`
}

func (srv *Server) sessionResponse(sess accounts.Session) loginResponse {
	return loginResponse{UserID: sess.UserID, AccessToken: sess.AccessToken, DeviceID: sess.DeviceID, HomeServer: srv.Config.ServerName}
}

// startSession logs a freshly registered account in, unless the client asked not to.
func (srv *Server) startSession(ctx context.Context, userID string, inhibit bool, deviceID, deviceName string) (any, error) {
	if inhibit {
		return loginResponse{UserID: userID, HomeServer: srv.Config.ServerName}, nil
	}
	sess, err := srv.Accounts.NewSession(ctx, userID, deviceID, deviceName)
	if err != nil {
		// The account stays: its name is claimed and the user can log in with the password
		// just set. Deleting it here could race with that login on another node.
		return nil, err
	}
	return srv.sessionResponse(sess), nil
}

func missingParam(name string) *matrixError {
	return errorf(http.StatusBadRequest, "M_MISSING_PARAM", "Missing %s", name)
}

// checkLen refuses a value over max characters with M_INVALID_PARAM: the spec's code for a
// parameter with a wrong value (M_TOO_LARGE is a 413 for whole requests).
func checkLen(name, value string, max int) error {
	if utf8.RuneCountInString(value) > max {
		return errorf(http.StatusBadRequest, "M_INVALID_PARAM", "%s is longer than %d characters", name, max)
	}
	return nil
}

// checkDevice refuses a device id a client chose that it could not address afterwards
// (/devices/{deviceId} takes at most maxIDBytes, and no control characters), and a display
// name over maxNameLen.
func checkDevice(id, displayName string) error {
	if len(id) > maxIDBytes || strings.ContainsFunc(id, unicode.IsControl) {
		return errorf(http.StatusBadRequest, "M_INVALID_PARAM", "device_id must be at most %d bytes, without control characters", maxIDBytes)
	}
	return checkLen("initial_device_display_name", displayName, maxNameLen)
}

func (srv *Server) loginFlows(*http.Request, *session) (any, error) {
	return map[string]any{"flows": []map[string]string{{"type": stagePassword}}}, nil
}

// login answers POST /login with m.login.password, the only login type offered.
func (srv *Server) login(r *http.Request, _ *session) (any, error) {
	var req credentials
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Type != stagePassword {
		return nil, errorf(http.StatusBadRequest, "M_UNKNOWN", "Unknown login type")
	}
	name, err := req.userName()
	switch {
	case err != nil:
		return nil, err
	case name == "":
		return nil, missingParam("user identifier")
	case req.Password == "":
		return nil, missingParam("password")
	}
	if err := checkDevice(req.DeviceID, req.DeviceName); err != nil {
		return nil, err
	}
	userID, err := srv.Accounts.UserID(name)
	if err != nil {
		return nil, accounts.ErrBadLogin
	}
	if err := srv.checkDeviceIDFree(r.Context(), userID, req.DeviceID); err != nil {
		return nil, err
	}
	var sess accounts.Session
	err = srv.guessLimited(userID, func() error {
		sess, err = srv.Accounts.Login(r.Context(), userID, req.Password, req.DeviceID, req.DeviceName)
		return err
	})
	if errors.Is(err, accounts.ErrDeactivated) {
		// The right password of a closed account: finish a deactivation cut short.
		_ = srv.leaveEveryRoom(r.Context(), userID)
	}
	if err != nil {
		return nil, err
	}
	return srv.sessionResponse(sess), nil
}

// checkDeviceIDFree refuses a device id that is the public key of one of the user's
// cross-signing keys, as the spec asks: in signatures the two are named alike. It runs before
// the password is checked (the login creates the device), which tells nothing that is not
// public: /keys/query serves those keys.
func (srv *Server) checkDeviceIDFree(ctx context.Context, userID, deviceID string) error {
	if deviceID == "" {
		return nil
	}
	taken, err := srv.Keys.IsCrossSigningKey(ctx, userID, deviceID)
	if err == nil && taken {
		err = forbidden("The device id is the public key of one of your cross-signing keys")
	}
	return err
}

// guessLimited runs a password check. Wrong guesses at one account are limited (as rc_login,
// per account) wherever they come from, so spreading them over addresses does not lift the
// limit. The turn is set aside before the check, so parallel guesses cannot all pass, and
// taken only if the password was wrong.
func (srv *Server) guessLimited(userID string, check func() error) error {
	done, err := srv.limits.failedLogin.hold(userID)
	if err != nil {
		return err
	}
	err = check()
	done(errors.Is(err, accounts.ErrBadLogin))
	return err
}

type registerRequest struct {
	Username     string       `json:"username"`
	Password     string       `json:"password"`
	DeviceID     string       `json:"device_id"`
	DeviceName   string       `json:"initial_device_display_name"`
	InhibitLogin bool         `json:"inhibit_login"`
	Auth         *credentials `json:"auth"`
}

// register answers POST /register with the single m.login.dummy stage.
// register counts against rc_registration only when it goes on to create the account: a client's sign-up
// takes two or three requests (the auth challenge, a name it must change), which must not use
// up the burst. Until then each request is refused once the bucket is empty.
func (srv *Server) register(r *http.Request, _ *session) (any, error) {
	if !srv.Config.EnableRegistration {
		return nil, forbidden("Registration is disabled")
	}
	if err := srv.limits.registration.check(srv.clientIP(r)); err != nil {
		return nil, err
	}
	switch r.URL.Query().Get("kind") {
	case "", "user":
	case "guest":
		return nil, errorf(http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is not enabled")
	default:
		return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "kind must be user or guest")
	}
	var req registerRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	// Refuse a bad or taken name before the auth dance, so the client can fix it at once.
	if req.Username != "" {
		if err := srv.Accounts.Available(r.Context(), req.Username); err != nil {
			return nil, err
		}
	}
	if req.Auth == nil || req.Auth.Type != stageDummy {
		return nil, uiaChallenge(stageDummy, req.Auth.session(), "")
	}
	if req.Password == "" {
		return nil, missingParam("password")
	}
	if err := checkDevice(req.DeviceID, req.DeviceName); err != nil {
		return nil, err
	}
	if err := srv.limits.registration.allow(srv.clientIP(r)); err != nil {
		return nil, err
	}
	userID, err := srv.createAccount(r.Context(), req.Username, req.Password)
	if err != nil {
		return nil, err
	}
	return srv.startSession(r.Context(), userID, req.InhibitLogin, req.DeviceID, req.DeviceName)
}

// createAccount registers localpart, or a generated one when the client gave none. Generated
// names are drawn at random, not counted, so nodes of a cluster need not agree on a counter;
// the rare collision is retried.
func (srv *Server) createAccount(ctx context.Context, localpart, password string) (string, error) {
	if localpart != "" {
		return srv.Accounts.Register(ctx, localpart, password, false)
	}
	for range 4 {
		userID, err := srv.Accounts.Register(ctx, randomLocalpart(), password, false)
		if !errors.Is(err, accounts.ErrUserInUse) {
			return userID, err
		}
	}
	return "", fmt.Errorf("no free generated user name after 4 tries")
}

// randomLocalpart is ten random digits.
func randomLocalpart() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return fmt.Sprintf("%010d", binary.BigEndian.Uint64(b[:])%10_000_000_000)
}

// registerAvailable answers GET /register/available?username=. With registration off it answers
// nothing, as Synapse does: it would only tell strangers which accounts exist.
func (srv *Server) registerAvailable(r *http.Request, _ *session) (any, error) {
	if !srv.Config.EnableRegistration {
		return nil, forbidden("Registration is disabled")
	}
	username := r.URL.Query().Get("username")
	if username == "" {
		return nil, missingParam("username")
	}
	if err := srv.Accounts.Available(r.Context(), username); err != nil {
		return nil, err
	}
	return map[string]bool{"available": true}, nil
}

// ---- Shared-secret registration (Synapse's admin API, used by its tools and bots) ----

func (srv *Server) sharedSecretEnabled() error {
	if srv.Config.RegistrationSharedSecret == "" {
		return errorf(http.StatusBadRequest, "M_UNKNOWN", "Shared secret registration is not enabled")
	}
	return nil
}

// adminRegisterNonce hands out a single-use nonce. It is kept in the store, not in memory,
// so the POST may reach any node of a cluster; the bucket forgets it after five minutes.
func (srv *Server) adminRegisterNonce(r *http.Request, _ *session) (any, error) {
	if err := srv.sharedSecretEnabled(); err != nil {
		return nil, err
	}
	nonce := accounts.RandomString(24)
	if _, err := srv.Store.Create(r.Context(), store.BucketNonces, store.Key(nonce), []byte("1")); err != nil {
		return nil, err
	}
	return map[string]string{"nonce": nonce}, nil
}

type adminRegisterRequest struct {
	Nonce        string `json:"nonce"`
	Username     string `json:"username"`
	DisplayName  string `json:"displayname"`
	Password     string `json:"password"`
	Admin        bool   `json:"admin"`
	UserType     string `json:"user_type"` // only signed; user types mean nothing here
	InhibitLogin bool   `json:"inhibit_login"`
	MAC          string `json:"mac"`
}

// adminRegister creates an account on proof of the shared secret, even with registration
// disabled: the HMAC shows the caller holds the secret.
func (srv *Server) adminRegister(r *http.Request, _ *session) (any, error) {
	if err := srv.sharedSecretEnabled(); err != nil {
		return nil, err
	}
	var req adminRegisterRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	switch {
	case req.Username == "":
		return nil, missingParam("username")
	case req.Password == "":
		return nil, missingParam("password")
	}
	if err := checkLen("displayname", req.DisplayName, maxNameLen); err != nil {
		return nil, err
	}
	// The nonce is spent before the MAC is checked, so each guess at the MAC costs a nonce.
	// A request refused for its nonce or its MAC also takes a turn of the registration limit
	// (the nonce GET took one for a valid registration): guesses and made-up nonces run into
	// the limit too.
	refuse := func(err error) error { return cmp.Or(srv.limits.registration.allow(srv.clientIP(r)), err) }
	if err := srv.spendNonce(r.Context(), req.Nonce); err != nil {
		return nil, refuse(err)
	}
	if !validRegistrationMAC(srv.Config.RegistrationSharedSecret, req) {
		return nil, refuse(forbidden("HMAC incorrect"))
	}
	userID, err := srv.Accounts.Register(r.Context(), req.Username, req.Password, req.Admin)
	if err != nil {
		return nil, err
	}
	if req.DisplayName != "" {
		// On failure the account stays, as in startSession; the name can be set again later.
		if err := srv.Accounts.SetProfile(r.Context(), userID, &req.DisplayName, nil); err != nil {
			return nil, err
		}
	}
	return srv.startSession(r.Context(), userID, req.InhibitLogin, "", "")
}

// spendNonce uses a nonce up. Marking it used is a compare-and-set on the revision read, so
// when two nodes race with the same nonce exactly one of them wins.
func (srv *Server) spendNonce(ctx context.Context, nonce string) error {
	unknown := errorf(http.StatusBadRequest, "M_UNKNOWN", "unrecognised nonce")
	if nonce == "" || len(nonce) > maxNonceLen {
		return unknown
	}
	key := store.Key(nonce)
	val, rev, err := srv.Store.Get(ctx, store.BucketNonces, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return unknown
	case err != nil:
		return err
	case string(val) != "1":
		return unknown // already spent
	}
	_, err = srv.Store.Update(ctx, store.BucketNonces, key, []byte("0"), rev)
	if errors.Is(err, store.ErrConflict) {
		return unknown
	}
	return err
}

// registrationMAC is HMAC-SHA1 over the NUL-separated nonce, user name, password and admin
// flag (and the user type when given), the format Synapse's registration tools sign.
func registrationMAC(secret string, req adminRegisterRequest) []byte {
	return accounts.RegistrationMAC(secret, req.Nonce, req.Username, req.Password, req.Admin, req.UserType)
}

// validRegistrationMAC compares in constant time so the MAC cannot be learnt byte by byte.
func validRegistrationMAC(secret string, req adminRegisterRequest) bool {
	got, err := hex.DecodeString(req.MAC)
	return err == nil && hmac.Equal(got, registrationMAC(secret, req))
}

// ---- Sessions ----

func (srv *Server) logout(r *http.Request, s *session) (any, error) {
	return struct{}{}, srv.Accounts.DeleteDevice(r.Context(), s.UserID, s.DeviceID)
}

func (srv *Server) logoutAll(r *http.Request, s *session) (any, error) {
	return struct{}{}, srv.Accounts.DeleteAllDevices(r.Context(), s.UserID, "")
}

func (srv *Server) whoami(_ *http.Request, s *session) (any, error) {
	return map[string]string{"user_id": s.UserID, "device_id": s.DeviceID}, nil
}

// changePassword answers POST /account/password behind the m.login.password stage.
func (srv *Server) changePassword(r *http.Request, s *session) (any, error) {
	var req struct {
		NewPassword   string       `json:"new_password"`
		LogoutDevices *bool        `json:"logout_devices"`
		Auth          *credentials `json:"auth"`
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.NewPassword == "" {
		return nil, missingParam("new_password")
	}
	if err := srv.requirePassword(r.Context(), s, req.Auth); err != nil {
		return nil, err
	}
	logoutOthers := req.LogoutDevices == nil || *req.LogoutDevices // the spec's default is true
	return struct{}{}, srv.Accounts.ChangePassword(r.Context(), s.UserID, req.NewPassword, s.DeviceID, logoutOthers)
}

// ---- Devices ----

// deviceView is a device as clients see it: never with its token hash.
type deviceView struct {
	DeviceID    string `json:"device_id"`
	DisplayName string `json:"display_name,omitempty"`
	LastSeenIP  string `json:"last_seen_ip,omitempty"`
	LastSeenTS  int64  `json:"last_seen_ts,omitempty"`
}

func viewDevice(d accounts.Device) deviceView {
	return deviceView{DeviceID: d.DeviceID, DisplayName: d.DisplayName, LastSeenIP: d.LastSeenIP, LastSeenTS: d.LastSeenTS}
}

func (srv *Server) listDevices(r *http.Request, s *session) (any, error) {
	devs, err := srv.Accounts.Devices(r.Context(), s.UserID)
	if err != nil {
		return nil, err
	}
	views := make([]deviceView, len(devs))
	for i, d := range devs {
		views[i] = viewDevice(d)
	}
	return map[string]any{"devices": views}, nil
}

func (srv *Server) getDevice(r *http.Request, s *session) (any, error) {
	dev, err := srv.Accounts.Device(r.Context(), s.UserID, r.PathValue("deviceId"))
	if err != nil {
		return nil, err
	}
	return viewDevice(dev), nil
}

// renameDevice answers PUT /devices/{deviceId}; without display_name nothing changes.
func (srv *Server) renameDevice(r *http.Request, s *session) (any, error) {
	var req struct {
		DisplayName *string `json:"display_name"`
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	deviceID := r.PathValue("deviceId")
	if req.DisplayName == nil {
		_, err := srv.Accounts.Device(r.Context(), s.UserID, deviceID) // still 404 for an unknown device
		return struct{}{}, err
	}
	if err := checkLen("display_name", *req.DisplayName, maxNameLen); err != nil {
		return nil, err
	}
	return struct{}{}, srv.Accounts.RenameDevice(r.Context(), s.UserID, deviceID, *req.DisplayName)
}

// devicesRequest is the body of a request that logs devices out behind the m.login.password
// stage.
type devicesRequest struct {
	Devices []string     `json:"devices"`
	Auth    *credentials `json:"auth"`
}

// deleteDevice answers DELETE /devices/{deviceId}.
func (srv *Server) deleteDevice(r *http.Request, s *session) (any, error) {
	var req devicesRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	req.Devices = []string{r.PathValue("deviceId")}
	return srv.logOutDevices(r.Context(), s, req)
}

// deleteDevices answers POST /delete_devices.
func (srv *Server) deleteDevices(r *http.Request, s *session) (any, error) {
	var req devicesRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Devices == nil {
		return nil, missingParam("devices")
	}
	return srv.logOutDevices(r.Context(), s, req)
}

// logOutDevices logs the devices out once the caller's password is given. A device that is
// already gone counts as logged out, as the spec has it.
func (srv *Server) logOutDevices(ctx context.Context, s *session, req devicesRequest) (any, error) {
	if err := srv.requirePassword(ctx, s, req.Auth); err != nil {
		return nil, err
	}
	for _, id := range req.Devices {
		if err := srv.Accounts.DeleteDevice(ctx, s.UserID, id); err != nil {
			return nil, err
		}
	}
	return struct{}{}, nil
}

// deactivate answers POST /account/deactivate behind the m.login.password stage: the account
// is closed (its tokens stop working, it cannot log in, its name stays taken), every device
// is logged out, and then the user leaves every room, declining invites and withdrawing
// knocks. Sessions end first, so none of them can join a room meanwhile. Once closed, the
// rest goes on if the client hangs up; should it fail all the same, logging in with the
// password (answered M_USER_DEACTIVATED) finishes it.
func (srv *Server) deactivate(r *http.Request, s *session) (any, error) {
	var req struct {
		Auth *credentials `json:"auth"` // erase is not applied: nothing is erased
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if err := srv.requirePassword(r.Context(), s, req.Auth); err != nil {
		return nil, err
	}
	if err := srv.Accounts.Deactivate(r.Context(), s.UserID); err != nil {
		return nil, err
	}
	if err := srv.leaveEveryRoom(r.Context(), s.UserID); err != nil {
		return nil, err
	}
	// This server holds no third-party ids, so there was nothing to unbind anywhere.
	return map[string]string{"id_server_unbind_result": "success"}, nil
}

// leaveEveryRoom makes a closed account leave every room it is in, invited to or knocking
// on, until none is left: a join already on its way when the account closed is left too.
func (srv *Server) leaveEveryRoom(ctx context.Context, userID string) error {
	ctx, cancel := accounts.Detached(ctx)
	defer cancel()
	for pass := 0; ; pass++ {
		var present []string
		for roomID, membership := range srv.Rooms.Model().UserRooms(userID) {
			if slices.Contains(presentMemberships, membership) {
				present = append(present, roomID)
			}
		}
		if len(present) == 0 || pass == maxLeavePasses {
			return nil
		}
		for _, roomID := range present {
			_, err := srv.Rooms.ChangeMembership(ctx, rooms.MembershipChange{RoomID: roomID, Sender: userID,
				Target: userID, Membership: "leave", Reason: "Deactivated"})
			if err != nil && !errors.Is(err, rooms.ErrForbidden) { // already left, kicked or banned
				return err
			}
		}
	}
}

// maxLeavePasses bounds leaveEveryRoom: each pass leaves the rooms the one before found, and
// only a join in flight adds one.
const maxLeavePasses = 3

// threePIDs answers GET /account/3pid: this server keeps no third-party ids.
func (srv *Server) threePIDs(*http.Request, *session) (any, error) {
	return map[string]any{"threepids": []any{}}, nil
}

// ---- Profiles ----

// profile is both the profile clients read and the body of a profile PUT. Pointers tell an
// absent field from an empty one.
type profile struct {
	DisplayName *string `json:"displayname,omitempty"`
	AvatarURL   *string `json:"avatar_url,omitempty"`
}

func profileOf(a accounts.Account) profile {
	var p profile
	if a.DisplayName != "" {
		p.DisplayName = &a.DisplayName
	}
	if a.AvatarURL != "" {
		p.AvatarURL = &a.AvatarURL
	}
	return p
}

// only keeps the one field named in the path; other names are not profile fields here.
func (p profile) only(field string) (profile, error) {
	switch field {
	case "displayname":
		return profile{DisplayName: p.DisplayName}, nil
	case "avatar_url":
		return profile{AvatarURL: p.AvatarURL}, nil
	}
	return profile{}, notFound("Unknown profile field %q", field)
}

func (p profile) validate() error {
	if p.DisplayName != nil {
		if err := checkLen("displayname", *p.DisplayName, maxNameLen); err != nil {
			return err
		}
	}
	if p.AvatarURL != nil {
		return checkLen("avatar_url", *p.AvatarURL, maxAvatarURLLen)
	}
	return nil
}

func (srv *Server) loadProfile(ctx context.Context, userID string) (profile, error) {
	acct, err := srv.Accounts.Account(ctx, userID)
	if err != nil {
		return profile{}, err // ErrNotFound is M_NOT_FOUND
	}
	return profileOf(acct), nil
}

func (srv *Server) getProfile(r *http.Request, _ *session) (any, error) {
	return srv.loadProfile(r.Context(), r.PathValue("userId"))
}

// getProfileField answers 404 when the user has no such value set, as the spec says (the
// whole profile, getProfile, leaves the key out instead).
func (srv *Server) getProfileField(r *http.Request, _ *session) (any, error) {
	p, err := srv.loadProfile(r.Context(), r.PathValue("userId"))
	if err != nil {
		return nil, err
	}
	field := r.PathValue("field")
	if p, err = p.only(field); err != nil {
		return nil, err
	}
	if p.DisplayName == nil && p.AvatarURL == nil {
		return nil, notFound("%s has no %s", r.PathValue("userId"), field)
	}
	return p, nil
}

// setProfileField answers PUT /profile/{userId}/{field} for the caller's own profile, then
// re-announces it in the caller's rooms.
func (srv *Server) setProfileField(r *http.Request, s *session) (any, error) {
	if r.PathValue("userId") != s.UserID {
		return nil, forbidden("You can only change your own profile")
	}
	var body profile
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	p, err := body.only(r.PathValue("field"))
	if err != nil {
		return nil, err
	}
	if p.DisplayName == nil && p.AvatarURL == nil {
		return nil, missingParam(r.PathValue("field"))
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	note, err := srv.Accounts.NoteUnannounced(r.Context(), s.UserID)
	if err != nil {
		return nil, err
	}
	if err := srv.Accounts.SetProfile(r.Context(), s.UserID, p.DisplayName, p.AvatarURL); err != nil {
		return nil, err
	}
	// The profile is saved; member events that lag behind are cosmetic, so a failure here
	// does not fail the request. The announcement goes on if the client hangs up.
	ctx, cancel := accounts.Detached(r.Context())
	defer cancel()
	if err := srv.propagateProfile(ctx, s.UserID, note); err != nil {
		srv.Log.Warn("profile change not sent to every room", "user", s.UserID, "err", err)
	}
	return struct{}{}, nil
}
