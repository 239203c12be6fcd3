package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// decodeBody reads a JSON object into v. Malformed JSON is M_NOT_JSON, JSON of the wrong
// shape is M_BAD_JSON, a body over the size cap is M_TOO_LARGE; an empty body is {}.
func decodeBody(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	return decodeJSON(body, v)
}

// readBody reads the request body (capped by ServeHTTP); only white space reads as empty.
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "Request body is over %d bytes", tooBig.Limit)
		}
		return nil, errorf(http.StatusBadRequest, "M_NOT_JSON", "Could not read the request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	return body, nil
}

// decodeJSON is decodeBody's parsing half, separate so it can be fuzzed.
func decodeJSON(body []byte, v any) error {
	if err := checkObject(body); err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return badJSON("%s", typeErrorText(typeErr))
		}
		return badJSON("%v", err)
	}
	return nil
}

// checkObject checks that body is a JSON object that clients can parse.
func checkObject(body []byte) error {
	if !json.Valid(body) {
		return errorf(http.StatusBadRequest, "M_NOT_JSON", "Content not JSON")
	}
	// encoding/json lets invalid UTF-8 through in strings; stored in an event it would be
	// served to every member and break their clients' JSON parsers.
	if !utf8.Valid(body) {
		return errorf(http.StatusBadRequest, "M_NOT_JSON", "Content is not valid UTF-8")
	}
	if !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		return badJSON("The body must be a JSON object")
	}
	shape := scanJSON(body)
	if shape.depth > maxJSONDepth {
		return badJSON("The body nests objects and arrays more than %d deep", maxJSONDepth)
	}
	if shape.overflow {
		return badJSON("The body has a number beyond the range of a 64-bit float")
	}
	// An escaped UTF-16 surrogate without its pair is no character: encoding/json reads it as
	// U+FFFD, gjson also drops the escape after it, and canonical JSON drops it, so the stored
	// event would say something the client did not send.
	if hasLoneSurrogate(body) {
		return badJSON("The body has a \\u escape of a UTF-16 surrogate without its pair")
	}
	return nil
}

// hasLoneSurrogate reports whether valid JSON escapes a UTF-16 surrogate (\uD800-\uDFFF) that
// is not a high one directly followed by a low one.
func hasLoneSurrogate(body []byte) bool {
	if !bytes.Contains(body, []byte(`\u`)) {
		return false
	}
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		if body[i+1] != 'u' { // valid JSON: an escape always has its next byte
			i++
			continue
		}
		switch unit := hex4(body[i+2 : i+6]); {
		case unit >= 0xDC00 && unit <= 0xDFFF:
			return true
		case unit >= 0xD800 && unit <= 0xDBFF:
			next := body[i+6:]
			if len(next) < 6 || next[0] != '\\' || next[1] != 'u' {
				return true
			}
			if low := hex4(next[2:6]); low < 0xDC00 || low > 0xDFFF {
				return true
			}
			i += 11
		default:
			i += 5
		}
	}
	return false
}

// hex4 is the value of four hexadecimal digits (valid JSON has them after \u).
func hex4(digits []byte) uint16 {
	var v uint16
	for _, c := range digits {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint16(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint16(c-'a'+10)
		default:
			v = v<<4 | uint16(c-'A'+10)
		}
	}
	return v
}

// jsonKind names the JSON value a Go type decodes from, for error messages clients can act on.
// typeErrorText says what a JSON value of the wrong type should have been, naming it by its
// path of JSON keys. The path Go gives also names embedded structs (EventFilter); JSON keys
// here begin with a lower-case letter, so those segments are left out.
func typeErrorText(e *json.UnmarshalTypeError) string {
	var path []string
	for seg := range strings.SplitSeq(e.Field, ".") {
		if r, _ := utf8.DecodeRuneInString(seg); !unicode.IsUpper(r) {
			path = append(path, seg)
		}
	}
	name := strings.Join(path, ".")
	if name == "" { // a map's value, whose key Go does not name
		name = "A value in the body"
	}
	return fmt.Sprintf("%s must be %s", name, jsonKind(e.Type))
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Interface:
		return "a JSON value"
	}
	return "a number"
}

// maxJSONDepth bounds nesting: content is served to every member, and many clients' JSON
// parsers recurse (Python's stops near 1,000 levels).
const maxJSONDepth = 100

// jsonShape is what checkObject needs from one pass over valid JSON, outside its strings.
type jsonShape struct {
	depth    int  // the deepest nesting of objects and arrays
	overflow bool // a number beyond float64's range (1e400), which no client can decode
}

func scanJSON(body []byte) jsonShape {
	var shape jsonShape
	depth, inString, escaped, numStart := 0, false, false, -1
	for i, c := range body {
		if numStart >= 0 && !isNumberByte(c) {
			shape.overflow = shape.overflow || overflowsFloat(body[numStart:i])
			numStart = -1
		}
		switch {
		case escaped:
			escaped = false
		case inString:
			escaped = c == '\\'
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			shape.depth = max(shape.depth, depth)
		case c == '}' || c == ']':
			depth--
		case numStart < 0 && (c == '-' || c >= '0' && c <= '9'):
			numStart = i
		}
	}
	return shape
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// overflowsFloat reports whether a JSON number is too large for float64. Numbers short and
// without an exponent, nearly all of them, are answered without parsing.
func overflowsFloat(number []byte) bool {
	if len(number) < 300 && !bytes.ContainsAny(number, "eE") {
		return false
	}
	_, err := strconv.ParseFloat(string(number), 64)
	return errors.Is(err, strconv.ErrRange) // only overflow: an underflow parses as 0
}

// rawObject reads a body that must be a JSON object and returns it as is (event content). Unlike
// other bodies it may not be empty: a state event sent without content would otherwise be
// stored as {} (empty power levels lock the room's creator out).
func rawObject(r *http.Request) (json.RawMessage, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if body == nil {
		return nil, errorf(http.StatusBadRequest, "M_NOT_JSON", "The request needs a JSON object as its body")
	}
	if err := checkObject(body); err != nil {
		return nil, err
	}
	if !repeatsKey(body) {
		var compact bytes.Buffer
		_ = json.Compact(&compact, body) // cannot fail: body is valid JSON
		return compact.Bytes(), nil
	}
	// A repeated key is read differently by different parsers: keep only its last value, as
	// Go's decoder (and most others) would read it.
	var obj map[string]json.RawMessage
	if err := decodeJSON(body, &obj); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(obj)
	return b, nil
}

// repeatsKey reports whether a JSON object has the same top-level key twice, however its
// keys are escaped (checkObject has refused the lone surrogates that decoders unescape
// differently).
func repeatsKey(object []byte) bool {
	seen := map[string]bool{}
	repeated := false
	gjson.ParseBytes(object).ForEach(func(key, _ gjson.Result) bool {
		repeated = seen[key.Str]
		seen[key.Str] = true
		return !repeated
	})
	return repeated
}
