// Package media owns the content repository: files clients upload (images, attachments,
// avatars), kept in JetStream's object store and named by mxc:// URIs, and thumbnails of
// images, made on first request and kept beside them.
package media

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // thumbnails of GIFs (their first frame)
	"image/jpeg"
	"image/png"
	"io"
	"mime"
	"regexp"
	"strconv"
	"time"

	"golang.org/x/image/draw"

	"github.com/firebreak/firebreak/internal/store"
)

// Errors the API answers with the spec's codes.
var (
	ErrNotFound   = errors.New("media not found")
	ErrBadRequest = errors.New("bad media request")
	ErrTooLarge   = errors.New("image too large to thumbnail")
)

// Service stores and serves media for one server name.
type Service struct {
	st         *store.Store
	serverName string
}

// New returns the content repository of serverName.
func New(st *store.Store, serverName string) *Service {
	return &Service{st: st, serverName: serverName}
}

// Info is what is known of a stored file.
type Info struct {
	ContentType string
	FileName    string
	Size        int64
}

// Metadata keys of a stored object.
const (
	metaContentType = "content_type"
	metaFileName    = "filename"
	metaUploader    = "uploader"
	metaCreated     = "created_ts"
)

// Upload stores a file and returns its mxc:// URI.
func (s *Service) Upload(ctx context.Context, uploader, contentType, fileName string, body io.Reader) (string, error) {
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	if _, _, err := mime.ParseMediaType(contentType); err != nil {
		return "", fmt.Errorf("%w: Content-Type %q: %v", ErrBadRequest, contentType, err)
	}
	id := newMediaID()
	meta := map[string]string{metaContentType: contentType, metaFileName: fileName, metaUploader: uploader,
		metaCreated: strconv.FormatInt(time.Now().UnixMilli(), 10)}
	if _, err := s.st.PutObject(ctx, id, meta, body); err != nil {
		return "", err
	}
	return "mxc://" + s.serverName + "/" + id, nil
}

// newMediaID is 144 random bits: media ids are unguessable, as the spec's servers make them.
func newMediaID() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// mediaIDRE is what a media id may be (the spec's opaque id, as this server makes them and
// as long as others might).
var mediaIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)

// Download opens a stored file; ErrNotFound for one this server does not have (with no
// federation, any of another server). The caller closes the reader.
func (s *Service) Download(ctx context.Context, serverName, mediaID string) (io.ReadCloser, Info, error) {
	if serverName != s.serverName || !mediaIDRE.MatchString(mediaID) {
		return nil, Info{}, ErrNotFound
	}
	return s.open(ctx, mediaID)
}

func (s *Service) open(ctx context.Context, name string) (io.ReadCloser, Info, error) {
	r, obj, err := s.st.GetObject(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, Info{}, ErrNotFound
	} else if err != nil {
		return nil, Info{}, err
	}
	return r, Info{ContentType: obj.Metadata[metaContentType], FileName: obj.Metadata[metaFileName], Size: obj.Size}, nil
}

// Thumbnail bounds.
const (
	maxThumbnailSide   = 1600       // px; clients ask for 32 to 800
	maxThumbnailSource = 50_000_000 // pixels decoded at most: a small file may claim a huge image
)

// Thumbnail is an image of a stored image no larger than width×height: scaled to fit
// ("scale"), or scaled to cover and cropped to the middle ("crop"). An image already that
// small is returned as it is. Each size is made once and kept.
func (s *Service) Thumbnail(ctx context.Context, serverName, mediaID string, width, height int, method string) ([]byte, string, error) {
	switch {
	case width < 1 || height < 1:
		return nil, "", fmt.Errorf("%w: width and height must be positive", ErrBadRequest)
	case method != "crop" && method != "scale":
		return nil, "", fmt.Errorf("%w: method must be crop or scale", ErrBadRequest)
	}
	width, height = min(width, maxThumbnailSide), min(height, maxThumbnailSide)
	r, info, err := s.Download(ctx, serverName, mediaID)
	if err != nil {
		return nil, "", err
	}
	defer r.Close()
	name := fmt.Sprintf("%s.thumb.%dx%d.%s", mediaID, width, height, method)
	if cached, kept, err := s.open(ctx, name); err == nil {
		defer cached.Close()
		b, err := io.ReadAll(cached)
		return b, kept.ContentType, err
	}
	original, err := io.ReadAll(r)
	if err != nil {
		return nil, "", err
	}
	thumb, contentType, err := makeThumbnail(original, info.ContentType, width, height, method)
	if err != nil {
		return nil, "", err
	}
	_, err = s.st.PutObject(ctx, name, map[string]string{metaContentType: contentType}, bytes.NewReader(thumb))
	return thumb, contentType, err
}

// makeThumbnail scales an encoded JPEG, PNG or GIF (its first frame). A PNG or GIF becomes a
// PNG, keeping transparency; a JPEG stays a JPEG.
func makeThumbnail(original []byte, contentType string, width, height int, method string) ([]byte, string, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(original))
	if err != nil {
		return nil, "", fmt.Errorf("%w: not an image this server thumbnails (%s)", ErrNotFound, contentType)
	}
	if cfg.Width*cfg.Height > maxThumbnailSource {
		return nil, "", fmt.Errorf("%w: %dx%d", ErrTooLarge, cfg.Width, cfg.Height)
	}
	if cfg.Width <= width && cfg.Height <= height {
		return original, "image/" + format, nil
	}
	src, _, err := image.Decode(bytes.NewReader(original))
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	dst, from := fitted(src.Bounds(), width, height, method)
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, from, draw.Src, nil)
	var out bytes.Buffer
	if format == "jpeg" {
		err = jpeg.Encode(&out, dst, &jpeg.Options{Quality: 80})
		return out.Bytes(), "image/jpeg", err
	}
	err = png.Encode(&out, dst)
	return out.Bytes(), "image/png", err
}

// fitted is the thumbnail's canvas and the part of the source drawn on it: the whole source
// fitted inside width×height ("scale"), or the source's middle cut to the box's shape and
// filling it ("crop").
func fitted(src image.Rectangle, width, height int, method string) (*image.RGBA, image.Rectangle) {
	sw, sh := src.Dx(), src.Dy()
	if method == "crop" {
		// The largest part of the source with the box's shape, in its middle.
		cw, ch := sw, sw*height/width
		if ch > sh {
			cw, ch = sh*width/height, sh
		}
		x0, y0 := src.Min.X+(sw-cw)/2, src.Min.Y+(sh-ch)/2
		return image.NewRGBA(image.Rect(0, 0, min(width, cw), min(height, ch))), image.Rect(x0, y0, x0+cw, y0+ch)
	}
	w, h := width, sh*width/sw
	if h > height {
		w, h = sw*height/sh, height
	}
	return image.NewRGBA(image.Rect(0, 0, max(w, 1), max(h, 1))), src
}
