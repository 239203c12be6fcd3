// Package wire writes and reads the compact binary records nodes store and hand each other:
// unsigned varints, and fields of bytes each prefixed with its length. Group messages and
// forwarded appends (store) and forwarded sends (rooms) are made of them.
package wire

import (
	"encoding/binary"
	"unsafe"
)

// MaxUvarintSize is the most bytes a uvarint takes.
const MaxUvarintSize = binary.MaxVarintLen64

// FieldSize is the most bytes a field of n bytes takes, its length included.
func FieldSize(n int) int { return MaxUvarintSize + n }

// FieldsSize is the most bytes AppendFields takes for fields.
func FieldsSize[T ~string | ~[]byte](fields ...T) int {
	size := 0
	for _, f := range fields {
		size += FieldSize(len(f))
	}
	return size
}

// AppendUvarint appends n.
func AppendUvarint(buf []byte, n uint64) []byte { return binary.AppendUvarint(buf, n) }

// AppendField appends f, prefixed with its length.
func AppendField[T ~string | ~[]byte](buf []byte, f T) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(f)))
	return append(buf, f...)
}

// AppendFields appends each field, prefixed with its length.
func AppendFields[T ~string | ~[]byte](buf []byte, fields ...T) []byte {
	for _, f := range fields {
		buf = AppendField(buf, f)
	}
	return buf
}

// Reader reads uvarints and fields. After the first that does not decode it fails, and every
// read returns nothing.
type Reader struct {
	data []byte
	bad  bool
}

// NewReader reads data; the fields it returns share data's memory.
func NewReader(data []byte) *Reader { return &Reader{data: data} }

// OK reports whether everything read so far decoded.
func (r *Reader) OK() bool { return !r.bad }

// More reports whether anything is left to read, and all so far decoded.
func (r *Reader) More() bool { return !r.bad && len(r.data) > 0 }

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	if r.bad {
		return 0
	}
	n, used := binary.Uvarint(r.data)
	if used <= 0 {
		r.bad = true
		return 0
	}
	r.data = r.data[used:]
	return n
}

// Field reads a field.
func (r *Reader) Field() []byte {
	n := r.Uvarint()
	if r.bad || n > uint64(len(r.data)) {
		r.bad = true
		return nil
	}
	f := r.data[:n:n]
	r.data = r.data[n:]
	return f
}

// String reads a field into a string of its own.
func (r *Reader) String() string { return string(r.Field()) }

// SharedString reads a field as a string that shares data's memory instead of copying it, for
// records whose strings live as long as the data anyway (View).
func (r *Reader) SharedString() string { return View(r.Field()) }

// View is b as a string that shares its memory instead of copying it: b must never change
// afterwards, and the string keeps all of b's array alive. Every view of bytes as a string in
// Firebreak is made here, so that this contract has one place.
func View(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
