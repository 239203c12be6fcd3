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
	"slices"
	"strconv"
	"time"

	"golang.org/x/image/draw"

	"github.com/firebreak/firebreak/internal/store"
)

// Errors the API answers with the spec's codes.
var (
	ErrNotFound        = errors.New("media not found")
	ErrBadRequest      = errors.New("bad media request")
	ErrCannotThumbnail = errors.New("cannot thumbnail this content")
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

// Thumbnails are made in a few sizes only, as Synapse makes them: a request gets the smallest
// of its method at least as large as it asked (or the largest), so the sizes kept per file
// are bounded, and clients asking for nearby sizes share one.
var thumbnailSizes = map[string][]image.Point{
	"crop":  {{32, 32}, {96, 96}, {320, 320}},
	"scale": {{320, 240}, {640, 480}, {800, 600}, {1600, 1200}},
}

// thumbnailSize is the size made for a request of width×height by method.
func thumbnailSize(width, height int, method string) image.Point {
	sizes := thumbnailSizes[method]
	for _, p := range sizes {
		if p.X >= width && p.Y >= height {
			return p
		}
	}
	return sizes[len(sizes)-1]
}

// What a thumbnail may cost: the original's bytes and pixels (a small file can claim a huge
// image; a 16-bit RGBA pixel takes 8 bytes decoded), and how many are made at once on a node.
const (
	maxThumbnailSourceBytes  = 20 << 20
	maxThumbnailSourcePixels = 24_000_000
	thumbnailsAtOnce         = 2
)

// thumbnailTurns lets thumbnailsAtOnce thumbnails be made at once; the others wait.
var thumbnailTurns = make(chan struct{}, thumbnailsAtOnce)

// thumbnailTypes are the images thumbnails are made of.
var thumbnailTypes = []string{"image/jpeg", "image/png", "image/gif"}

// Thumbnail is a still image of a stored JPEG, PNG or GIF (its first frame) in one of the
// thumbnail sizes: scaled to fit ("scale"), or scaled to cover and cropped to the middle
// ("crop"). A JPEG or PNG already that small is returned as it is. Each size is made once
// and kept. Anything else, or an image too large to decode safely, is ErrCannotThumbnail.
func (s *Service) Thumbnail(ctx context.Context, serverName, mediaID string, width, height int, method string) ([]byte, string, error) {
	switch {
	case width < 1 || height < 1:
		return nil, "", fmt.Errorf("%w: width and height must be positive", ErrBadRequest)
	case thumbnailSizes[method] == nil:
		return nil, "", fmt.Errorf("%w: method must be crop or scale", ErrBadRequest)
	}
	size := thumbnailSize(width, height, method)
	r, info, err := s.Download(ctx, serverName, mediaID)
	if err != nil {
		return nil, "", err
	}
	defer r.Close()
	if base, _, _ := mime.ParseMediaType(info.ContentType); !slices.Contains(thumbnailTypes, base) {
		return nil, "", fmt.Errorf("%w: %s", ErrCannotThumbnail, info.ContentType)
	}
	if info.Size > maxThumbnailSourceBytes {
		return nil, "", fmt.Errorf("%w: the image is over %d bytes", ErrCannotThumbnail, maxThumbnailSourceBytes)
	}
	name := fmt.Sprintf("%s.thumb.%dx%d.%s", mediaID, size.X, size.Y, method)
	if cached, kept, err := s.open(ctx, name); err == nil {
		defer cached.Close()
		b, err := io.ReadAll(cached)
		return b, kept.ContentType, err
	}
	select {
	case thumbnailTurns <- struct{}{}:
		defer func() { <-thumbnailTurns }()
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
	original, err := io.ReadAll(r)
	if err != nil {
		return nil, "", err
	}
	thumb, contentType, made, err := makeThumbnail(original, size.X, size.Y, method)
	if err != nil || !made {
		return thumb, contentType, err
	}
	_, err = s.st.PutObject(ctx, name, map[string]string{metaContentType: contentType}, bytes.NewReader(thumb))
	return thumb, contentType, err
}

// makeThumbnail scales an encoded JPEG, PNG or GIF (its first frame). A PNG or GIF becomes a
// PNG, keeping transparency, a JPEG stays a JPEG. made is false when the original, a JPEG or
// PNG already small enough, is returned as it is (not kept again); a GIF is always made
// still, as the spec asks unless a client wants animation.
func makeThumbnail(original []byte, width, height int, method string) (thumb []byte, contentType string, made bool, err error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(original))
	if err != nil {
		return nil, "", false, fmt.Errorf("%w: %v", ErrCannotThumbnail, err)
	}
	if cfg.Width*cfg.Height > maxThumbnailSourcePixels {
		return nil, "", false, fmt.Errorf("%w: %dx%d is over %d pixels", ErrCannotThumbnail, cfg.Width, cfg.Height, maxThumbnailSourcePixels)
	}
	if cfg.Width <= width && cfg.Height <= height && format != "gif" {
		return original, "image/" + format, false, nil
	}
	src, _, err := image.Decode(bytes.NewReader(original))
	if err != nil {
		return nil, "", false, fmt.Errorf("%w: %v", ErrCannotThumbnail, err)
	}
	dst, from := fitted(src.Bounds(), width, height, method)
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, from, draw.Src, nil)
	var out bytes.Buffer
	if format == "jpeg" {
		err = jpeg.Encode(&out, dst, &jpeg.Options{Quality: 80})
		return out.Bytes(), "image/jpeg", true, err
	}
	err = png.Encode(&out, dst)
	return out.Bytes(), "image/png", true, err
}

// fitted is the thumbnail's canvas and the part of the source drawn on it: the whole source
// fitted inside width×height ("scale"), or the source's middle cut to the box's shape and
// filling it ("crop"). Never larger than the source, never less than a pixel a side.
func fitted(src image.Rectangle, width, height int, method string) (*image.RGBA, image.Rectangle) {
	sw, sh := src.Dx(), src.Dy()
	if method == "crop" {
		// The largest part of the source with the box's shape, in its middle.
		cw, ch := sw, max(sw*height/width, 1)
		if ch > sh {
			cw, ch = max(sh*width/height, 1), sh
		}
		x0, y0 := src.Min.X+(sw-cw)/2, src.Min.Y+(sh-ch)/2
		return image.NewRGBA(image.Rect(0, 0, min(width, cw), min(height, ch))), image.Rect(x0, y0, x0+cw, y0+ch)
	}
	w, h := min(width, sw), min(sh*width/sw, sh)
	if h > height {
		w, h = min(sw*height/sh, sw), height
	}
	return image.NewRGBA(image.Rect(0, 0, max(w, 1), max(h, 1))), src
}
