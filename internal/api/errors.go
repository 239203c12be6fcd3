package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/firebreak/firebreak/internal/accountdata"
	"github.com/firebreak/firebreak/internal/accounts"
	"github.com/firebreak/firebreak/internal/e2ee"
	"github.com/firebreak/firebreak/internal/filter"
	"github.com/firebreak/firebreak/internal/media"
	"github.com/firebreak/firebreak/internal/rooms"
	"github.com/firebreak/firebreak/internal/store"
	"github.com/firebreak/firebreak/internal/syncer"
)

// matrixError is an error the client sees as {"errcode": ..., "error": ...}.
type matrixError struct {
	Status       int    `json:"-"`
	Code         string `json:"errcode"`
	Msg          string `json:"error"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
	// CurrentVersion is the current key backup, with M_WRONG_ROOM_KEYS_VERSION.
	CurrentVersion string `json:"current_version,omitempty"`
}

func (e *matrixError) Error() string { return e.Code + ": " + e.Msg }

func errorf(status int, code, format string, args ...any) *matrixError {
	return &matrixError{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

func badJSON(format string, args ...any) *matrixError {
	return errorf(http.StatusBadRequest, "M_BAD_JSON", format, args...)
}

func forbidden(format string, args ...any) *matrixError {
	return errorf(http.StatusForbidden, "M_FORBIDDEN", format, args...)
}

func notFound(format string, args ...any) *matrixError {
	return errorf(http.StatusNotFound, "M_NOT_FOUND", format, args...)
}

func unrecognized() *matrixError {
	return errorf(http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
}

// toMatrixError maps the errors of the packages below onto the spec's codes. Anything it
// does not know is an internal error, logged, and never shown with its details.
func toMatrixError(err error) (*matrixError, bool) {
	var me *matrixError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &me):
		return me, true
	case errors.Is(err, rooms.ErrForbidden):
		return forbidden("%v", err), true
	case errors.Is(err, rooms.ErrNotFound), errors.Is(err, accounts.ErrNotFound),
		errors.Is(err, filter.ErrNotFound), errors.Is(err, accountdata.ErrNotFound):
		return notFound("%v", err), true
	case errors.Is(err, rooms.ErrTooLarge), errors.Is(err, store.ErrValueTooLarge), errors.Is(err, accountdata.ErrQuota):
		return errorf(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "%v", err), true
	case errors.As(err, &typeErr): // in words about the JSON, not about Go's types
		return badJSON("%s", typeErrorText(typeErr)), true
	case errors.Is(err, rooms.ErrBadRequest), errors.Is(err, filter.ErrInvalid):
		return badJSON("%v", err), true
	case errors.Is(err, rooms.ErrInvalidRoomState):
		return errorf(http.StatusBadRequest, "M_INVALID_ROOM_STATE", "%v", err), true
	case errors.Is(err, rooms.ErrCanonicalAlias):
		return errorf(http.StatusBadRequest, "M_BAD_ALIAS", "%v", err), true
	case errors.Is(err, rooms.ErrInvalidAlias), errors.Is(err, rooms.ErrInvalidParam), errors.Is(err, store.ErrKeyTooLong):
		return errorf(http.StatusBadRequest, "M_INVALID_PARAM", "%v", err), true
	case errors.Is(err, rooms.ErrAliasInUse):
		return errorf(http.StatusBadRequest, "M_ROOM_IN_USE", "%v", err), true
	case errors.Is(err, rooms.ErrNestedThread):
		// The spec has no code of its own for it yet, and asks for this one.
		return errorf(http.StatusBadRequest, "M_UNKNOWN", "%v", err), true
	case errors.Is(err, rooms.ErrUnsupportedVersion):
		return errorf(http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION", "%v", err), true
	case errors.Is(err, e2ee.ErrBadRequest), errors.Is(err, media.ErrBadRequest):
		return errorf(http.StatusBadRequest, "M_INVALID_PARAM", "%v", err), true
	case errors.Is(err, e2ee.ErrInvalidSignature):
		return errorf(http.StatusBadRequest, "M_INVALID_SIGNATURE", "%v", err), true
	case errors.Is(err, media.ErrNotFound):
		return errorf(http.StatusNotFound, "M_NOT_FOUND", "%v", err), true
	case errors.Is(err, media.ErrCannotThumbnail):
		return errorf(http.StatusBadRequest, "M_UNKNOWN", "%v", err), true
	case errors.Is(err, e2ee.ErrTooLarge):
		return errorf(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "%v", err), true
	case errors.Is(err, e2ee.ErrForbidden):
		return forbidden("%v", err), true
	case errors.Is(err, e2ee.ErrMissingMaster):
		return errorf(http.StatusBadRequest, "M_MISSING_PARAM", "%v", err), true
	case errors.Is(err, e2ee.ErrNotFound):
		return errorf(http.StatusNotFound, "M_NOT_FOUND", "%v", err), true
	case errors.Is(err, accounts.ErrDeactivated):
		return errorf(http.StatusForbidden, "M_USER_DEACTIVATED", "%v", err), true
	case errors.Is(err, accounts.ErrInvalidUsername), errors.Is(err, accounts.ErrUserIDTooLong), errors.Is(err, accounts.ErrReservedName):
		return errorf(http.StatusBadRequest, "M_INVALID_USERNAME", "%v", err), true
	case errors.Is(err, accounts.ErrUserInUse):
		return errorf(http.StatusBadRequest, "M_USER_IN_USE", "%v", err), true
	case errors.Is(err, accounts.ErrBadLogin):
		return forbidden("Invalid username or password"), true
	case errors.Is(err, accounts.ErrWeakPassword):
		return errorf(http.StatusBadRequest, "M_WEAK_PASSWORD", "%v", err), true
	case errors.Is(err, accounts.ErrUnknownToken), errors.Is(err, syncer.ErrSessionEnded):
		return errorf(http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "Unknown access token"), true
	case errors.Is(err, syncer.ErrBadRequest):
		return errorf(http.StatusBadRequest, "M_INVALID_PARAM", "%v", err), true
	case errors.Is(err, syncer.ErrNotReady):
		return errorf(http.StatusServiceUnavailable, "M_UNAVAILABLE", "This server is catching up; retry shortly"), true
	case errors.Is(err, rooms.ErrUnavailable), errors.Is(err, store.ErrUnavailable):
		return errorf(http.StatusServiceUnavailable, "M_UNAVAILABLE", "Storage is unavailable right now; retry shortly."), true
	}
	return nil, false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
