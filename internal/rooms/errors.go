package rooms

import "errors"

// Errors the API maps onto Matrix error codes. They are wrapped with the detail.
var (
	ErrForbidden          = errors.New("forbidden")
	ErrNotFound           = errors.New("not found")
	ErrTooLarge           = errors.New("event too large")
	ErrBadRequest         = errors.New("bad request")
	ErrInvalidRoomState   = errors.New("invalid room state") // what a createRoom asked for breaks the auth rules
	ErrAliasInUse         = errors.New("room alias in use")
	ErrCanonicalAlias     = errors.New("bad canonical alias") // malformed, or points at another room
	ErrInvalidAlias       = errors.New("invalid room alias")
	ErrInvalidParam       = errors.New("invalid parameter")
	ErrUnavailable        = errors.New("storage unavailable")
	ErrUnsupportedVersion = errors.New("unsupported room version")
	ErrNestedThread       = errors.New("cannot start threads from an event with a relation")
	errUnknownRoom        = errors.New("event for a room without a create event")
)
