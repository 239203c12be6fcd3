package e2e

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
)

// pngOf is a w×h PNG, for uploads.
func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := range w {
		for y := range h {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 200, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testMedia: a file uploaded by one user is downloaded by another, whole and with its type;
// an image's thumbnails are the sizes asked for; media is served to signed-in users only,
// and what cannot be served is refused with the spec's errors.
func testMedia(t *testing.T, srv *server) {
	alice, bob := registerUser(t, srv, "alice"), registerUser(t, srv, "bob")
	picture := pngOf(t, 640, 480)
	up, err := alice.UploadBytesWithName(testCtx(t), picture, "image/png", "holiday.png")
	mustOK(t, err, "upload")
	if up.ContentURI.Homeserver != serverName {
		t.Fatalf("content uri %s", up.ContentURI)
	}
	get := func(u *user, path string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(testCtx(t), "GET", srv.URL+path, nil)
		if u != nil {
			req.Header.Set("Authorization", "Bearer "+u.AccessToken)
		}
		resp, err := rawClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}
	mxc := up.ContentURI.Homeserver + "/" + up.ContentURI.FileID

	t.Run("Download", func(t *testing.T) {
		got, err := bob.DownloadBytes(testCtx(t), up.ContentURI)
		mustOK(t, err, "download")
		if !bytes.Equal(got, picture) {
			t.Fatalf("downloaded %d bytes, want the %d uploaded", len(got), len(picture))
		}
		resp, _ := get(bob, "/_matrix/client/v1/media/download/"+mxc)
		if ct := resp.Header.Get("Content-Type"); ct != "image/png" {
			t.Errorf("Content-Type %q", ct)
		}
		if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "inline") || !strings.Contains(cd, "holiday.png") {
			t.Errorf("Content-Disposition %q, want inline with the file name", cd)
		}
	})
	t.Run("Thumbnails", func(t *testing.T) {
		for _, tc := range []struct {
			method        string
			width, height int
			wantW, wantH  int
		}{
			// Made in the thumbnail sizes only: the smallest of the method at least as large.
			{"scale", 96, 96, 320, 240},
			{"crop", 90, 90, 96, 96},
			{"scale", 2000, 2000, 640, 480}, // never larger than the original
		} {
			resp, err := bob.DownloadThumbnail(testCtx(t), up.ContentURI, tc.height, tc.width, mautrix.DownloadThumbnailExtra{Method: tc.method})
			mustOK(t, err, "thumbnail")
			img, _, err := image.Decode(resp.Body)
			resp.Body.Close()
			mustOK(t, err, "decode the thumbnail")
			if b := img.Bounds(); b.Dx() != tc.wantW || b.Dy() != tc.wantH {
				t.Errorf("%s %dx%d: got %dx%d, want %dx%d", tc.method, tc.width, tc.height, b.Dx(), b.Dy(), tc.wantW, tc.wantH)
			}
		}
	})
	t.Run("Refused", func(t *testing.T) {
		text, err := alice.UploadBytes(testCtx(t), []byte("<script>alert(1)</script>"), "text/html")
		mustOK(t, err, "upload a page")
		resp, _ := get(bob, "/_matrix/client/v1/media/download/"+text.ContentURI.Homeserver+"/"+text.ContentURI.FileID)
		if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("a page is served as %q (nosniff %q): want an attachment", cd, resp.Header.Get("X-Content-Type-Options"))
		}
		for _, c := range []struct {
			name, path string
			u          *user
			status     int
			errcode    string
		}{
			{"no token", "/_matrix/client/v1/media/download/" + mxc, nil, http.StatusUnauthorized, "M_MISSING_TOKEN"},
			{"the deprecated path", "/_matrix/media/v3/download/" + mxc, nil, http.StatusNotFound, "M_NOT_FOUND"},
			{"an unknown id", "/_matrix/client/v1/media/download/" + serverName + "/nope", bob, http.StatusNotFound, "M_NOT_FOUND"},
			{"another server", "/_matrix/client/v1/media/download/elsewhere.example/" + up.ContentURI.FileID, bob, http.StatusNotFound, "M_NOT_FOUND"},
			{"a thumbnail without a size", "/_matrix/client/v1/media/thumbnail/" + mxc, bob, http.StatusBadRequest, "M_INVALID_PARAM"},
			{"a thumbnail of a page", "/_matrix/client/v1/media/thumbnail/" + text.ContentURI.Homeserver + "/" + text.ContentURI.FileID + "?width=32&height=32", bob, http.StatusBadRequest, "M_UNKNOWN"},
			{"a thumbnail by a bad method", "/_matrix/client/v1/media/thumbnail/" + mxc + "?width=32&height=32&method=zoom", bob, http.StatusBadRequest, "M_INVALID_PARAM"},
		} {
			t.Run(c.name, func(t *testing.T) {
				token := ""
				if c.u != nil {
					token = c.u.AccessToken
				}
				rawRequest(t, "GET", srv.URL+c.path, token, nil).expectError(t, c.status, c.errcode)
			})
		}
		cfg := rawRequest(t, "GET", clientURL(srv, "v1/media/config"), bob.AccessToken, nil)
		cfg.expectOK(t)
		if cfg.Body["m.upload.size"] == nil {
			t.Errorf("media config: %s", cfg.Raw)
		}
	})
}
