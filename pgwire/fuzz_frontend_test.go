package pgwire

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Fuzz targets for the decoders of the client's extended-protocol messages
// (frontend.go). Seed corpora: testdata/fuzz/<FuzzName>/.

// FuzzDecodeParse checks decodeParse on any Parse body: what it accepts
// pgproto3 decodes to the same name, query and types, and appendParse
// encodes back byte for byte (a Parse renamed for the upstream carries
// exactly what the client sent); and every well-formed Parse built from the
// fuzzed parts is accepted as built.
func FuzzDecodeParse(f *testing.F) {
	f.Add([]byte("s1\x00select $1\x00\x00\x01\x00\x00\x00\x17"), "", "", []byte(nil))
	f.Add([]byte("\x00select 1\x00\x00\x00"), "stmt", "select $1, $2", []byte{0, 0, 0, 23, 0, 0, 0, 25})
	f.Add([]byte("\x00\x00\x00\x01\x00\x00\x00"), "a\x00b", "", []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, raw []byte, name, query string, oidBytes []byte) {
		msg := message('P', raw)
		if p, ok := decodeParse(msg); ok {
			if again := appendParse(nil, p.name, &preparedStmt{sent: p.query, paramOIDs: p.oids}); !bytes.Equal(again, msg) {
				t.Fatalf("decodeParse(%q) = %+v, which encodes as %q", raw, p, again)
			}
			if !bytes.Equal(p.rest, raw[len(p.name)+1:]) {
				t.Fatalf("decodeParse(%q): rest %q is not what follows the name", raw, p.rest)
			}
			var ref pgproto3.Parse
			if err := ref.Decode(raw); err != nil || ref.Name != p.name || ref.Query != p.query || !slices.Equal(ref.ParameterOIDs, p.oids) {
				t.Fatalf("decodeParse(%q) = %+v, pgproto3 reads %+v, %v", raw, p, ref, err)
			}
		}

		// A well-formed Parse: names and query cannot hold NUL, and the
		// count is a uint16.
		name, query = strings.ReplaceAll(name, "\x00", ""), strings.ReplaceAll(query, "\x00", "")
		oids := make([]uint32, 0, len(oidBytes)/4)
		for i := 0; i+4 <= len(oidBytes) && len(oids) < 65535; i += 4 {
			oids = append(oids, binary.BigEndian.Uint32(oidBytes[i:]))
		}
		msg, err := (&pgproto3.Parse{Name: name, Query: query, ParameterOIDs: oids}).Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		p, ok := decodeParse(msg)
		if !ok || p.name != name || p.query != query || !slices.Equal(p.oids, oids) {
			t.Fatalf("decodeParse(%q) = %+v, %v; want name %q query %q oids %v", msg, p, ok, name, query, oids)
		}
	})
}

// pgBindRest decodes the part of a Bind after the portal and statement
// names as PostgreSQL's exec_bind_message reads it: counts are unsigned
// 16-bit, a value length is -1 (NULL) or 0..remaining, and nothing may
// follow. It is the reference decodeBindRest is checked against.
func pgBindRest(b []byte) (paramFormats []int16, params [][]byte, resultFormats []int16, ok bool) {
	u16 := func() (int, bool) {
		if len(b) < 2 {
			return 0, false
		}
		v := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		return v, true
	}
	formats := func() ([]int16, bool) {
		n, ok := u16()
		if !ok || len(b) < 2*n {
			return nil, false
		}
		var out []int16
		for i := 0; i < n; i++ {
			out = append(out, int16(binary.BigEndian.Uint16(b[2*i:])))
		}
		b = b[2*n:]
		return out, true
	}
	if paramFormats, ok = formats(); !ok {
		return nil, nil, nil, false
	}
	n, ok := u16()
	if !ok {
		return nil, nil, nil, false
	}
	for i := 0; i < n; i++ {
		if len(b) < 4 {
			return nil, nil, nil, false
		}
		l := int32(binary.BigEndian.Uint32(b))
		b = b[4:]
		switch {
		case l == -1:
			params = append(params, nil)
		case l < 0 || int(l) > len(b):
			return nil, nil, nil, false
		default:
			params = append(params, b[:l:l])
			b = b[l:]
		}
	}
	if resultFormats, ok = formats(); !ok {
		return nil, nil, nil, false
	}
	return paramFormats, params, resultFormats, len(b) == 0
}

// hasNegativeLength reports whether the Bind rest b holds a parameter
// length below -1 (b must decode with pgBindRest's layout up to there).
func hasNegativeLength(b []byte) bool {
	skip := func(unit int) bool {
		if len(b) < 2 {
			return false
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+unit*n {
			return false
		}
		b = b[2+unit*n:]
		return true
	}
	if !skip(2) || len(b) < 2 {
		return false
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	for i := 0; i < n && len(b) >= 4; i++ {
		l := int32(binary.BigEndian.Uint32(b))
		b = b[4:]
		if l < -1 {
			return true
		}
		if l > 0 && int(l) <= len(b) {
			b = b[l:]
		}
	}
	return false
}

// FuzzDecodeBindRest checks decodeBindRest (the Bind of a statement the
// gateway answers itself) against PostgreSQL's reading of a Bind: the same
// formats and values, NULL told apart from empty; values that are copies,
// not views of the read buffer; and any Bind pgproto3 encodes read back.
func FuzzDecodeBindRest(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x01\x00\x00\x00\x011\x00\x00"), int16(0), []byte("42"), false, int16(0))
	f.Add([]byte("\x00\x01\x00\x01\x00\x01\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x07\x00\x01\x00\x01"), int16(1), []byte{0, 0, 0, 7}, false, int16(1))
	f.Add([]byte("\x00\x00\x00\x02\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00"), int16(0), []byte(nil), true, int16(0))
	f.Fuzz(func(t *testing.T, raw []byte, format int16, value []byte, null bool, resultFormat int16) {
		input := bytes.Clone(raw)
		pf, params, rf, ok := decodeBindRest(input)
		wpf, wparams, wrf, wok := pgBindRest(raw)
		switch {
		case ok && !wok && hasNegativeLength(raw):
			// A length below -1 is read as NULL; PostgreSQL refuses the
			// Bind ("insufficient data left in message"). Both end in an
			// error for the client; see the fuzzing report.
			return
		case ok != wok:
			// PostgreSQL's counts are unsigned: more than 32767 formats
			// or values (which the gateway refuses) need a body this
			// large.
			if wok && (len(wpf) > 32767 || len(wparams) > 32767 || len(wrf) > 32767) {
				return
			}
			t.Fatalf("decodeBindRest(%q) ok = %v, PostgreSQL's reading %v", raw, ok, wok)
		case !ok:
		default:
			if diff := cmp.Diff(wpf, pf); diff != "" {
				t.Fatalf("parameter formats (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wrf, rf); diff != "" {
				t.Fatalf("result formats (-want +got):\n%s", diff)
			}
			if len(params) != len(wparams) {
				t.Fatalf("%d values, want %d", len(params), len(wparams))
			}
			for i := range params {
				if (params[i] == nil) != (wparams[i] == nil) || !bytes.Equal(params[i], wparams[i]) {
					t.Fatalf("value %d = %q (nil %v), want %q (nil %v)", i, params[i], params[i] == nil, wparams[i], wparams[i] == nil)
				}
			}
			// The values must outlive the read buffer.
			for j := range input {
				input[j] ^= 0xff
			}
			for i := range params {
				if !bytes.Equal(params[i], wparams[i]) {
					t.Fatalf("value %d changed with the read buffer: it is not a copy", i)
				}
			}
		}

		// A Bind built from the fuzzed parts.
		b := pgproto3.Bind{ParameterFormatCodes: []int16{format}, ResultFormatCodes: []int16{resultFormat}}
		if null {
			b.Parameters = [][]byte{nil, value}
		} else {
			b.Parameters = [][]byte{value, []byte{}}
		}
		msg, err := b.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		rest := msg[5+2:] // header, then two empty names
		pf, params, rf, ok = decodeBindRest(rest)
		if !ok || !slices.Equal(pf, b.ParameterFormatCodes) || !slices.Equal(rf, b.ResultFormatCodes) || len(params) != 2 {
			t.Fatalf("decodeBindRest of a pgproto3 Bind %+v = %v %q %v %v", b, pf, params, rf, ok)
		}
		for i, want := range b.Parameters {
			if (params[i] == nil) != (want == nil) || !bytes.Equal(params[i], want) {
				t.Fatalf("value %d = %q, want %q (NULL %v)", i, params[i], want, want == nil)
			}
		}
	})
}
