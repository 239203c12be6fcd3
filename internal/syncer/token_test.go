package syncer

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestTokenRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		tok  Token
		want string // the rendered form, when the case pins it
	}{
		{"one shard zero", Token{Rooms: []uint64{0}}, "fb2_0_0_0_0_0_0"},
		{"one shard", Token{Rooms: []uint64{35}, Receipts: 36, AccountData: 1, Typing: 2, Keys: 3, ToDevice: 37}, "fb2_z_10_1_2_3_11"},
		{"four shards", Token{Rooms: []uint64{1, 2, 3, 4}, Receipts: 5, AccountData: 6, Typing: 7}, "fb2_1.2.3.4_5_6_7_0_0"},
		{"sixteen shards", Token{Rooms: []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 1295}},
			"fb2_0.1.2.3.4.5.6.7.8.9.a.b.c.d.e.zz_0_0_0_0_0"},
		{"max values", Token{Rooms: []uint64{math.MaxUint64, math.MaxUint64}, Receipts: math.MaxUint64, AccountData: math.MaxUint64, Typing: math.MaxUint64, Keys: math.MaxUint64, ToDevice: math.MaxUint64},
			"fb2_3w5e11264sgsf.3w5e11264sgsf_3w5e11264sgsf_3w5e11264sgsf_3w5e11264sgsf_3w5e11264sgsf_3w5e11264sgsf"},
		{"many shards", Token{Rooms: make([]uint64, 1024), Receipts: 99}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.tok.String()
			if tc.want != "" && s != tc.want {
				t.Errorf("String() = %q, want %q", s, tc.want)
			}
			got, err := ParseToken(s, len(tc.tok.Rooms))
			if err != nil {
				t.Fatalf("ParseToken(%q): %v", s, err)
			}
			if !tokensEqual(got, tc.tok) {
				t.Errorf("ParseToken(String()) = %+v, want %+v", got, tc.tok)
			}
			// A token is only valid for the shard count it was made with.
			for _, n := range []int{len(tc.tok.Rooms) - 1, len(tc.tok.Rooms) + 1} {
				if n < 1 {
					continue
				}
				if _, err := ParseToken(s, n); err == nil {
					t.Errorf("ParseToken(%q, %d) accepted a token of %d shards", s, n, len(tc.tok.Rooms))
				}
			}
		})
	}
}

func TestParseTokenRejects(t *testing.T) {
	cases := []struct {
		name   string
		s      string
		shards int
	}{
		{"empty", "", 1},
		{"prefix only", "fb1", 1},
		{"wrong prefix", "fb3_0_0_0_0_0_0", 1},
		{"fb2 with fb1's parts", "fb2_0_0_0_0", 1},
		{"fb1 with fb2's parts", "fb1_0_0_0_0_0_0", 1},
		{"no prefix", "_0_0_0_0", 1},
		{"upper case prefix", "FB1_0_0_0_0", 1},
		{"room token", "r10", 1},
		{"too few shards", "fb1_1.2.3_0_0_0", 4},
		{"too many shards", "fb1_1.2.3.4.5_0_0_0", 4},
		{"missing typing", "fb1_1.2.3.4_0_0", 4},
		{"missing two parts", "fb1_1.2.3.4_0", 4},
		{"extra part", "fb1_1.2.3.4_0_0_0_0", 4},
		{"empty shard", "fb1_1..3.4_0_0_0", 4},
		{"empty shard list", "fb1__0_0_0", 1},
		{"empty receipts", "fb1_1__0_0", 1},
		{"empty account data", "fb1_1_0__0", 1},
		{"empty typing", "fb1_1_0_0_", 1},
		{"non-base36 shard", "fb1_1.2.!.4_0_0_0", 4},
		{"non-base36 receipts", "fb1_1_-1_0_0", 1},
		{"sign", "fb1_+1_0_0_0", 1},
		{"space", "fb1_1 _0_0_0", 1},
		{"overflow", "fb1_3w5e11264sgsg_0_0_0", 1},
		{"overflow typing", "fb1_0_0_0_zzzzzzzzzzzzzzzzzz", 1},
		{"unicode digit", "fb1_١_0_0_0", 1},
		{"dots elsewhere", "fb1_1_0.0_0_0", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tok, err := ParseToken(tc.s, tc.shards); err == nil {
				t.Errorf("ParseToken(%q, %d) = %+v, want an error", tc.s, tc.shards, tok)
			} else if !errors.Is(err, errBadToken) {
				t.Errorf("ParseToken(%q, %d) error %v is not errBadToken", tc.s, tc.shards, err)
			}
		})
	}
}

// A token from before end-to-end encryption (fb1) still reads, as having no key or to-device
// positions: its client gets every undelivered message and every key change again.
func TestParseTokenV1(t *testing.T) {
	got, err := ParseToken("fb1_1.2_3_4_5", 2)
	if err != nil {
		t.Fatal(err)
	}
	want := Token{Rooms: []uint64{1, 2}, Receipts: 3, AccountData: 4, Typing: 5}
	if !tokensEqual(got, want) {
		t.Errorf("ParseToken = %+v, want %+v", got, want)
	}
}

func TestParseTokenAcceptsUpperCase(t *testing.T) {
	// Base 36 digits are case-insensitive: an upper-case token is the same position.
	got, err := ParseToken("fb1_A.Z_10_0_1", 2)
	if err != nil {
		t.Fatal(err)
	}
	want := Token{Rooms: []uint64{10, 35}, Receipts: 36, Typing: 1}
	if !tokensEqual(got, want) {
		t.Errorf("ParseToken = %+v, want %+v", got, want)
	}
}

func TestRoomToken(t *testing.T) {
	for _, v := range []uint64{0, 1, 35, 36, 1 << 40, math.MaxUint64} {
		s := roomToken(v).String()
		if !strings.HasPrefix(s, "r") {
			t.Errorf("roomToken(%d) = %q, want an r prefix", v, s)
		}
		for _, shards := range []int{1, 4} {
			got, err := parseRoomPosition(s, 0, shards)
			if err != nil || got != v {
				t.Errorf("parseRoomPosition(%q) = %d, %v; want %d", s, got, err, v)
			}
		}
	}
}

func TestParseRoomPosition(t *testing.T) {
	sync4 := Token{Rooms: []uint64{10, 20, 30, 40}, Receipts: 1, AccountData: 2, Typing: 3}.String()
	cases := []struct {
		name          string
		s             string
		shard, shards int
		want          uint64
		wantErr       bool
	}{
		{name: "room token", s: "r0", shards: 4, want: 0},
		{name: "room token base36", s: "rz", shards: 4, want: 35},
		{name: "room token upper case", s: "rZ", shards: 4, want: 35},
		{name: "sync token shard 0", s: sync4, shard: 0, shards: 4, want: 10},
		{name: "sync token shard 2", s: sync4, shard: 2, shards: 4, want: 30},
		{name: "sync token shard 3", s: sync4, shard: 3, shards: 4, want: 40},
		{name: "sync token one shard", s: "fb1_7_0_0_0", shard: 0, shards: 1, want: 7},
		{name: "sync token wrong shard count", s: sync4, shard: 0, shards: 3, wantErr: true},
		{name: "empty", s: "", shards: 4, wantErr: true},
		{name: "r alone", s: "r", shards: 4, wantErr: true},
		{name: "room token bad digit", s: "r_1", shards: 4, wantErr: true},
		{name: "room token negative", s: "r-1", shards: 4, wantErr: true},
		{name: "room token overflow", s: "r3w5e11264sgsg", shards: 4, wantErr: true},
		{name: "other prefix", s: "s123", shards: 4, wantErr: true},
		{name: "bare number", s: "123", shards: 4, wantErr: true},
		{name: "sync token broken", s: "fb1_1.2.3.!_0_0_0", shards: 4, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRoomPosition(tc.s, tc.shard, tc.shards)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseRoomPosition(%q) = %d, want an error", tc.s, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseRoomPosition(%q, %d, %d) = %d, %v; want %d", tc.s, tc.shard, tc.shards, got, err, tc.want)
			}
		})
	}
}

func tokensEqual(a, b Token) bool {
	return slices.Equal(a.Rooms, b.Rooms) && a.Receipts == b.Receipts && a.AccountData == b.AccountData && a.Typing == b.Typing &&
		a.Keys == b.Keys && a.ToDevice == b.ToDevice
}

func FuzzParseToken(f *testing.F) {
	for _, seed := range []struct {
		s      string
		shards int
	}{
		{"fb1_0_0_0_0", 1},
		{"fb1_1.2.3.4_5_6_7", 4},
		{"fb1_A.b.C.d_Z_0_0", 4},
		{"fb1_3w5e11264sgsf_0_0_0", 1},
		{"fb1_3w5e11264sgsg_0_0_0", 1},
		{"fb1__0_0_0", 0},
		{"fb1_1.2_0_0", 2},
		{"r10", 4},
		{"", 1},
		{"fb1_____", 3},
	} {
		f.Add(seed.s, seed.shards)
	}
	f.Fuzz(func(t *testing.T, s string, shards int) {
		if shards < 1 || shards > 1024 { // what config.Validate allows
			shards = 1 + (shards&0x7fffffff)%1024
		}
		tok, err := ParseToken(s, shards)
		if pos, perr := parseRoomPosition(s, shards-1, shards); perr == nil && err == nil && pos != tok.Rooms[shards-1] {
			t.Fatalf("parseRoomPosition(%q) = %d, but the token's last shard is %d", s, pos, tok.Rooms[shards-1])
		}
		if err != nil {
			if !errors.Is(err, errBadToken) {
				t.Fatalf("ParseToken(%q) error %v is not errBadToken", s, err)
			}
			return
		}
		if len(tok.Rooms) != shards {
			t.Fatalf("ParseToken(%q, %d) returned %d shard positions", s, shards, len(tok.Rooms))
		}
		again := tok.String()
		tok2, err := ParseToken(again, shards)
		if err != nil {
			t.Fatalf("ParseToken(%q) = %+v renders as %q, which does not parse: %v", s, tok, again, err)
		}
		if !tokensEqual(tok, tok2) {
			t.Fatalf("ParseToken(%q) = %+v, but its rendering %q parses as %+v", s, tok, again, tok2)
		}
		if tok2.String() != again {
			t.Fatalf("rendering is not stable: %q then %q", again, tok2.String())
		}
	})
}
