package wire

import (
	"bytes"
	"strings"
	"testing"
	"unsafe"
)

func TestRoundTrip(t *testing.T) {
	buf := AppendUvarint(nil, 300)
	buf = AppendField(buf, "héllo")
	buf = AppendFields(buf, []byte{}, []byte{}, []byte{0, 1, 2})
	r := NewReader(buf)
	if n := r.Uvarint(); n != 300 {
		t.Errorf("Uvarint = %d, want 300", n)
	}
	if s := r.String(); s != "héllo" {
		t.Errorf("String = %q", s)
	}
	if s := r.SharedString(); s != "" {
		t.Errorf("empty SharedString = %q", s)
	}
	if f := r.Field(); len(f) != 0 {
		t.Errorf("empty field = %q", f)
	}
	if f := r.Field(); !bytes.Equal(f, []byte{0, 1, 2}) {
		t.Errorf("Field = %v", f)
	}
	if r.More() || !r.OK() {
		t.Errorf("after the last field: More %v, OK %v", r.More(), r.OK())
	}
}

func TestFieldsSizeBoundsAppendFields(t *testing.T) {
	fields := []string{"", "a", strings.Repeat("x", 300)}
	if n, most := len(AppendFields(nil, fields...)), FieldsSize(fields...); n > most {
		t.Errorf("AppendFields took %d bytes, FieldsSize said at most %d", n, most)
	}
}

func TestReaderFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"nothing", nil},
		{"a varint cut short", []byte{0x80}},
		{"a length past the end", []byte{5, 'a', 'b'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(tc.data)
			if f := r.Field(); f != nil || r.OK() || r.More() {
				t.Errorf("Field = %q, OK %v, More %v; want nil, false, false", f, r.OK(), r.More())
			}
			if r.Uvarint() != 0 || r.String() != "" || r.SharedString() != "" {
				t.Error("a failed reader still reads")
			}
		})
	}
}

func TestFieldCannotGrowIntoTheNext(t *testing.T) {
	buf := AppendField(AppendField(nil, "ab"), "cd")
	r := NewReader(buf)
	first := r.Field()
	_ = append(first, 'X')
	if s := r.String(); s != "cd" {
		t.Errorf("appending to a field changed the next: %q", s)
	}
}

// TestSharedStringSharesTheData checks that SharedString views the data rather than copying
// it: what the group messages' readers rely on to keep no second copy of each id.
func TestSharedStringSharesTheData(t *testing.T) {
	buf := AppendFields(nil, "ab", "cd")
	r := NewReader(buf)
	if s := r.SharedString(); s != "ab" {
		t.Fatalf("SharedString = %q", s)
	}
	s := r.SharedString()
	if unsafe.StringData(s) != &buf[len(buf)-2] {
		t.Error("SharedString copied the field")
	}
}
