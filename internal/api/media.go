package api

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// fileResponse is a handler's answer that is a file, not JSON.
type fileResponse struct {
	contentType, fileName string
	size                  int64
	body                  io.Reader
	close                 func() error
}

// inlineTypes are the content types a browser may show in place: media that runs no script.
// Anything else is served as an attachment, so an uploaded page cannot run as this server's.
var inlineTypes = []string{"image/jpeg", "image/png", "image/gif", "image/webp", "image/apng", "image/avif",
	"video/mp4", "video/webm", "video/ogg", "audio/mp4", "audio/webm", "audio/ogg", "audio/mpeg", "audio/wav",
	"audio/x-wav", "audio/flac", "text/plain"}

// uploadTime is how long an upload's body may take to arrive: the largest file from a slow
// client, well past the 30 s other requests get.
const uploadTime = 15 * time.Minute

func (f *fileResponse) write(w http.ResponseWriter) {
	if f.close != nil {
		defer f.close()
	}
	h := w.Header()
	base, _, err := mime.ParseMediaType(f.contentType)
	if err != nil {
		f.contentType, base = "application/octet-stream", "" // what the uploader said is no type
	}
	h.Set("Content-Type", f.contentType)
	disposition := "attachment"
	if slices.ContainsFunc(inlineTypes, func(t string) bool { return strings.EqualFold(t, base) }) {
		disposition = "inline"
	}
	if f.fileName != "" {
		disposition = mime.FormatMediaType(disposition, map[string]string{"filename": f.fileName})
	}
	h.Set("Content-Disposition", disposition)
	// The spec's advice for media: never sniffed into something that runs, never framed.
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	if f.size >= 0 {
		h.Set("Content-Length", strconv.FormatInt(f.size, 10))
	}
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, f.body)
}

// mediaConfig answers GET /media/config.
func (srv *Server) mediaConfig(*http.Request, *session) (any, error) {
	return map[string]int64{"m.upload.size": srv.Config.MaxUploadSize}, nil
}

// upload answers POST /_matrix/media/v3/upload?filename=: the body is the file.
func (srv *Server) upload(r *http.Request, s *session) (any, error) {
	uri, err := srv.Media.Upload(r.Context(), s.UserID, r.Header.Get("Content-Type"), r.URL.Query().Get("filename"), r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, errorf(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "Uploads are limited to %d bytes", srv.Config.MaxUploadSize)
	}
	if err != nil {
		return nil, err
	}
	return map[string]string{"content_uri": uri}, nil
}

// download answers GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}].
func (srv *Server) download(r *http.Request, _ *session) (any, error) {
	body, info, err := srv.Media.Download(r.Context(), r.PathValue("serverName"), r.PathValue("mediaId"))
	if err != nil {
		return nil, err
	}
	return &fileResponse{contentType: info.ContentType, fileName: cmp.Or(r.PathValue("fileName"), info.FileName),
		size: info.Size, body: body, close: body.Close}, nil
}

// thumbnail answers GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}.
func (srv *Server) thumbnail(r *http.Request, _ *session) (any, error) {
	q := r.URL.Query()
	width, werr := strconv.Atoi(q.Get("width"))
	height, herr := strconv.Atoi(q.Get("height"))
	if werr != nil || herr != nil {
		return nil, errorf(http.StatusBadRequest, "M_INVALID_PARAM", "width and height must be integers")
	}
	method := q.Get("method")
	if method == "" {
		method = "scale"
	}
	thumb, contentType, err := srv.Media.Thumbnail(r.Context(), r.PathValue("serverName"), r.PathValue("mediaId"), width, height, method)
	if err != nil {
		return nil, err
	}
	return &fileResponse{contentType: contentType, size: int64(len(thumb)), body: bytes.NewReader(thumb)}, nil
}

// legacyMedia answers the unauthenticated download and thumbnail endpoints the spec
// deprecated in v1.11: media is only served to a signed-in user, as Synapse serves new media.
func (srv *Server) legacyMedia(*http.Request, *session) (any, error) {
	return nil, notFound("Media is served by the authenticated endpoints under /_matrix/client/v1/media")
}
