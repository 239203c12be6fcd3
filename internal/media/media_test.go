package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"testing"
)

func encoded(t *testing.T, w, h int, asJPEG bool) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	var buf bytes.Buffer
	var err error
	if asJPEG {
		err = jpeg.Encode(&buf, img, nil)
	} else {
		err = png.Encode(&buf, img)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestMakeThumbnail(t *testing.T) {
	for _, tc := range []struct {
		name          string
		w, h          int
		jpeg          bool
		boxW, boxH    int
		method        string
		wantW, wantH  int
		wantType      string
		wantUntouched bool
	}{
		{"wide, scaled to fit", 800, 400, false, 100, 100, "scale", 100, 50, "image/png", false},
		{"tall, scaled to fit", 300, 900, true, 100, 100, "scale", 33, 100, "image/jpeg", false},
		{"wide, cropped to the box", 800, 400, false, 100, 100, "crop", 100, 100, "image/png", false},
		{"tall, cropped to a wide box", 300, 900, true, 120, 60, "crop", 120, 60, "image/jpeg", false},
		{"already small enough", 50, 40, false, 100, 100, "scale", 50, 40, "image/png", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			original := encoded(t, tc.w, tc.h, tc.jpeg)
			thumb, contentType, err := makeThumbnail(original, "", tc.boxW, tc.boxH, tc.method)
			if err != nil {
				t.Fatal(err)
			}
			cfg, _, err := image.DecodeConfig(bytes.NewReader(thumb))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Width != tc.wantW || cfg.Height != tc.wantH || contentType != tc.wantType {
				t.Errorf("got %dx%d %s, want %dx%d %s", cfg.Width, cfg.Height, contentType, tc.wantW, tc.wantH, tc.wantType)
			}
			if untouched := bytes.Equal(thumb, original); untouched != tc.wantUntouched {
				t.Errorf("returned the original: %v, want %v", untouched, tc.wantUntouched)
			}
		})
	}
}

// A small file that claims a huge image is refused before it is decoded, and something that
// is not an image has no thumbnail.
func TestMakeThumbnailRefuses(t *testing.T) {
	huge := encoded(t, 1, 1, false)
	// Rewrite the PNG header's size (IHDR width and height) to 100000×100000, and its
	// checksum: the file is a few bytes, the image it claims 10 billion pixels.
	copy(huge[16:24], []byte{0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0})
	binary.BigEndian.PutUint32(huge[29:33], crc32.ChecksumIEEE(huge[12:29]))
	if _, _, err := makeThumbnail(huge, "image/png", 32, 32, "scale"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a huge image: %v, want ErrTooLarge", err)
	}
	if _, _, err := makeThumbnail([]byte("<html>"), "text/html", 32, 32, "scale"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a page: %v, want ErrNotFound", err)
	}
}
