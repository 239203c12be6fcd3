// Package api serves the Matrix Client-Server API over HTTP: routing, authentication, request
// parsing and limits, rate limiting and error mapping. It speaks Matrix to clients and calls
// the accounts, rooms and syncer packages for the work.
package api

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/firebreak/firebreak/internal/accountdata"
	"github.com/firebreak/firebreak/internal/accounts"
	"github.com/firebreak/firebreak/internal/config"
	"github.com/firebreak/firebreak/internal/e2ee"
	"github.com/firebreak/firebreak/internal/filter"
	"github.com/firebreak/firebreak/internal/media"
	"github.com/firebreak/firebreak/internal/rooms"
	"github.com/firebreak/firebreak/internal/store"
	"github.com/firebreak/firebreak/internal/syncer"
)

// Deps are the services the API is a front for.
type Deps struct {
	Config      config.Config
	Store       *store.Store
	Accounts    *accounts.Service
	AccountData *accountdata.Service
	Keys        *e2ee.Service
	Media       *media.Service
	Rooms       *rooms.Service
	Sync        *syncer.Service
	Log         *slog.Logger
}

// Server is the HTTP front end.
type Server struct {
	Deps
	mux     *http.ServeMux
	limits  limiters
	filters filter.Cache
}

// session is the authenticated caller of a request.
type session struct {
	UserID   string
	DeviceID string
	Token    string
}

// handlerFunc handles one request and returns the JSON body of a 200 or an error.
type handlerFunc func(r *http.Request, s *session) (any, error)

type routeOpts struct {
	auth    bool      // needs an access token
	limit   *limiter  // rate limit applied before the handler
	keyBy   limitedBy // what the rate limit counts: the user or the client's address
	maxBody int64     // the request body's cap; 0: max_request_body_size
	// bodyTime is how long the body may take to arrive (uploads); 0: the server's ReadTimeout.
	bodyTime time.Duration
}

// New builds the API with every route registered.
func New(d Deps) *Server {
	srv := &Server{Deps: d, mux: http.NewServeMux()}
	srv.limits = newLimiters(d.Config)
	srv.routes()
	srv.mux.HandleFunc(unknownRoutePattern, srv.unknownRoute)
	return srv
}

// client registers a Client-Server API route under /v3 and the older /r0 prefix.
func (srv *Server) client(method, path string, h handlerFunc, o routeOpts) {
	for _, prefix := range []string{"/_matrix/client/v3", "/_matrix/client/r0"} {
		srv.handle(method, prefix+path, h, o)
	}
}

// clientV1 serves an endpoint the spec introduced under /_matrix/client/v1.
func (srv *Server) clientV1(method, path string, h handlerFunc, o routeOpts) {
	srv.handle(method, "/_matrix/client/v1"+path, h, o)
}

func (srv *Server) handle(method, path string, h handlerFunc, o routeOpts) {
	srv.mux.HandleFunc(method+" "+path, func(w http.ResponseWriter, r *http.Request) {
		srv.serve(w, r, h, o)
	})
}

// ServeHTTP adds CORS, answers preflights and routes the request; each route caps its own
// body (serve), and a path no route takes gets M_UNRECOGNIZED.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusOK)
		return
	}
	// ServeMux redirects a path it would clean ("//", dot segments) before any route runs, to
	// a path another resource may answer: a state key "." is not the state key "". So a dot
	// segment is taken literally, as Synapse takes it, escaped for the mux to match as one
	// segment; a path with an empty segment inside is no route's.
	if mayBeUnclean(r.URL.Path) {
		escaped, ok := literalDotSegments(r.URL.EscapedPath())
		if !ok {
			srv.writeError(w, r, unrecognized()) // no route, whatever the method
			return
		}
		r.URL.RawPath = escaped
	}
	srv.mux.ServeHTTP(w, r)
}

func mayBeUnclean(path string) bool {
	return strings.Contains(path, "//") || strings.Contains(path, "/.")
}

// literalDotSegments escapes the dot segments of an escaped path ("." and ".."), and reports
// false for a path with an empty segment other than its last (a trailing slash, which a state
// event with the empty state key ends in).
func literalDotSegments(escapedPath string) (string, bool) {
	segments := strings.Split(escapedPath, "/")
	for i, seg := range segments {
		switch {
		case seg == "" && i != 0 && i != len(segments)-1:
			return "", false
		case seg == ".":
			segments[i] = "%2E"
		case seg == "..":
			segments[i] = "%2E%2E"
		}
	}
	return strings.Join(segments, "/"), true
}

// unknownRoutePattern takes every request no other route takes (ServeMux prefers the most
// specific pattern), so that a request is routed once, not once to check and again to serve.
const unknownRoutePattern = "/"

// unknownRoute is the spec's answer to a request no route takes: 405 when the path is served
// for another method, 404 otherwise, both M_UNRECOGNIZED.
func (srv *Server) unknownRoute(w http.ResponseWriter, r *http.Request) {
	srv.writeError(w, r, srv.unknownRouteError(r))
}

func (srv *Server) unknownRouteError(r *http.Request) error {
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = method
		if _, pattern := srv.mux.Handler(probe); pattern != "" && pattern != unknownRoutePattern {
			return errorf(http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "This endpoint does not take %s", r.Method)
		}
	}
	return unrecognized()
}

func (srv *Server) serve(w http.ResponseWriter, r *http.Request, h handlerFunc, o routeOpts) {
	defer func() {
		if p := recover(); p != nil {
			srv.Log.Error("handler panic", "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			srv.writeError(w, r, errorf(http.StatusInternalServerError, "M_UNKNOWN", "Internal server error"))
		}
	}()
	if err := checkParams(r.URL); err != nil {
		srv.writeError(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, cmp.Or(o.maxBody, srv.Config.MaxRequestBodySize))
	if o.bodyTime > 0 {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(o.bodyTime))
	}
	var s *session
	if o.auth {
		var err error
		if s, err = srv.authenticate(r); err != nil {
			srv.writeError(w, r, err)
			return
		}
	}
	if o.limit != nil {
		key := srv.clientIP(r)
		if o.keyBy == byUser && s != nil {
			key = s.UserID
		}
		if err := o.limit.allow(key); err != nil {
			srv.writeError(w, r, err)
			return
		}
	}
	resp, err := h(r, s)
	if err != nil {
		srv.writeError(w, r, err)
		return
	}
	if file, ok := resp.(*fileResponse); ok {
		file.write(w)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// maxIDBytes is the spec's limit on identifiers (user, room, event ids, aliases, event types,
// state keys); no path parameter needs more.
const maxIDBytes = 255

// checkParams refuses a path with a parameter over maxIDBytes, or one that is not UTF-8
// once unescaped, before anything looks it up. Identifiers are Unicode: stored, invalid bytes
// would come back as U+FFFD, under a name the client never sent. It refuses a malformed query
// too (a bad % escape), whose parameters Go would otherwise drop without a word: a page read
// from a "from" token so lost would start from the newest event.
func checkParams(u *url.URL) error {
	if _, err := url.ParseQuery(u.RawQuery); err != nil {
		return errorf(http.StatusBadRequest, "M_INVALID_PARAM", "The query string is malformed: %v", err)
	}
	for seg := range strings.SplitSeq(u.Path, "/") {
		if len(seg) > maxIDBytes {
			return errorf(http.StatusBadRequest, "M_INVALID_PARAM", "A path parameter is over %d bytes", maxIDBytes)
		}
		if !utf8.ValidString(seg) {
			return errorf(http.StatusBadRequest, "M_INVALID_PARAM", "A path parameter is not valid UTF-8")
		}
	}
	return nil
}

// statusError is an error that carries its own response body, such as a User-Interactive
// Authentication challenge.
type statusError interface {
	error
	StatusCode() int
}

func (srv *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var se statusError
	if errors.As(err, &se) {
		writeJSON(w, se.StatusCode(), se)
		return
	}
	me, ok := toMatrixError(err)
	if !ok {
		if r.Context().Err() != nil {
			return // the client went away
		}
		srv.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		me = errorf(http.StatusInternalServerError, "M_UNKNOWN", "Internal server error")
	}
	if me.RetryAfterMS > 0 { // in whole seconds, rounded up, for clients that read the header
		w.Header().Set("Retry-After", strconv.FormatInt((me.RetryAfterMS+999)/1000, 10))
	}
	if me.Status == http.StatusUnauthorized && me.Code == "M_UNKNOWN_TOKEN" {
		me2 := *me
		writeJSON(w, me.Status, struct {
			matrixError
			SoftLogout bool `json:"soft_logout"`
		}{me2, false})
		return
	}
	writeJSON(w, me.Status, me)
}

// authenticate finds the caller from the Authorization header or the access_token parameter.
func (srv *Server) authenticate(r *http.Request) (*session, error) {
	token := r.URL.Query().Get("access_token")
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, t, _ := strings.Cut(auth, " ")
		if !strings.EqualFold(scheme, "Bearer") { // schemes are case-insensitive (RFC 9110)
			return nil, errorf(http.StatusUnauthorized, "M_MISSING_TOKEN", "Authorization header must be a Bearer token")
		}
		token = strings.TrimSpace(t)
	}
	if token == "" {
		return nil, errorf(http.StatusUnauthorized, "M_MISSING_TOKEN", "Missing access token")
	}
	userID, deviceID, err := srv.Accounts.Authenticate(r.Context(), token)
	if err != nil {
		return nil, err
	}
	srv.Accounts.Saw(userID, deviceID, srv.clientIP(r))
	return &session{UserID: userID, DeviceID: deviceID, Token: token}, nil
}

// clientIP is the client's address, as the per-address rate limits count it.
func (srv *Server) clientIP(r *http.Request) string {
	if srv.Config.XForwarded {
		if hops := r.Header.Values("X-Forwarded-For"); len(hops) > 0 {
			last := hops[len(hops)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if addr := strings.TrimSpace(last); addr != "" {
				return addr
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Serve runs the HTTP server on l until ctx ends, then lets requests in flight finish for up
// to shutdownGrace (the syncer ends its long polls on the same ctx, so they do not hold the
// shutdown up) and closes whatever is left.
func (srv *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second,
		// A client that sends its body slowly must not hold a handler (and the shutdown)
		// forever; responses, long polls included, are not bounded by it.
		ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		_ = hs.Close() // the listener failed: connections already open must not outlive the store
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if hs.Shutdown(sctx) != nil {
			_ = hs.Close()
		}
		return nil
	}
}

// shutdownGrace is how long requests in flight may take to finish when the node stops.
const shutdownGrace = 10 * time.Second
