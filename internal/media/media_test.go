package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"testing"
)

func encoded(t *testing.T, w, h int, format string) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	var buf bytes.Buffer
	var err error
	switch format {
	case "jpeg":
		err = jpeg.Encode(&buf, img, nil)
	case "gif":
		err = gif.Encode(&buf, img, nil)
	default:
		err = png.Encode(&buf, img)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestMakeThumbnail(t *testing.T) {
	for _, tc := range []struct {
		name         string
		w, h         int
		format       string
		boxW, boxH   int
		method       string
		wantW, wantH int
		wantType     string
		wantMade     bool
	}{
		{"wide, scaled to fit", 800, 400, "png", 100, 100, "scale", 100, 50, "image/png", true},
		{"tall, scaled to fit", 300, 900, "jpeg", 100, 100, "scale", 33, 100, "image/jpeg", true},
		{"wide, cropped to the box", 800, 400, "png", 100, 100, "crop", 100, 100, "image/png", true},
		{"tall, cropped to a wide box", 300, 900, "jpeg", 120, 60, "crop", 120, 60, "image/jpeg", true},
		{"already small enough", 50, 40, "png", 100, 100, "scale", 50, 40, "image/png", false},
		{"a small GIF, made still", 50, 40, "gif", 100, 100, "scale", 50, 40, "image/png", true},
		{"a line cropped across", 1, 1000, "png", 1000, 1, "crop", 1, 1, "image/png", true},
		{"a line cropped along", 3000, 2, "png", 1, 100, "crop", 1, 2, "image/png", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			original := encoded(t, tc.w, tc.h, tc.format)
			thumb, contentType, made, err := makeThumbnail(original, tc.boxW, tc.boxH, tc.method)
			if err != nil {
				t.Fatal(err)
			}
			cfg, _, err := image.DecodeConfig(bytes.NewReader(thumb))
			if err != nil {
				t.Fatalf("the thumbnail does not decode: %v", err)
			}
			if cfg.Width != tc.wantW || cfg.Height != tc.wantH || contentType != tc.wantType || made != tc.wantMade {
				t.Errorf("got %dx%d %s made=%v, want %dx%d %s made=%v", cfg.Width, cfg.Height, contentType, made,
					tc.wantW, tc.wantH, tc.wantType, tc.wantMade)
			}
		})
	}
}

// A small file that claims a huge image is refused before it is decoded, and something that
// is not an image has no thumbnail.
func TestMakeThumbnailRefuses(t *testing.T) {
	huge := encoded(t, 1, 1, "png")
	// Rewrite the PNG header's size (IHDR width and height) to 100000×100000, and its
	// checksum: the file is a few bytes, the image it claims 10 billion pixels.
	copy(huge[16:24], []byte{0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0})
	binary.BigEndian.PutUint32(huge[29:33], crc32.ChecksumIEEE(huge[12:29]))
	for name, data := range map[string][]byte{"a huge image": huge, "a page": []byte("<html>")} {
		if _, _, _, err := makeThumbnail(data, 32, 32, "scale"); !errors.Is(err, ErrCannotThumbnail) {
			t.Errorf("%s: %v, want ErrCannotThumbnail", name, err)
		}
	}
}

func TestThumbnailSize(t *testing.T) {
	for _, tc := range []struct {
		w, h   int
		method string
		want   image.Point
	}{
		{32, 32, "crop", image.Pt(32, 32)},
		{40, 40, "crop", image.Pt(96, 96)},
		{96, 96, "scale", image.Pt(320, 240)},
		{700, 500, "scale", image.Pt(800, 600)},
		{5000, 5000, "scale", image.Pt(1600, 1200)},
	} {
		if got := thumbnailSize(tc.w, tc.h, tc.method); got != tc.want {
			t.Errorf("thumbnailSize(%d, %d, %s) = %v, want %v", tc.w, tc.h, tc.method, got, tc.want)
		}
	}
}
