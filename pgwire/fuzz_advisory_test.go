package pgwire

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dsqlgate/dsqlgate/internal/compat"
	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// Fuzz target for the messages that describe and answer the advisory-lock
// calls the gateway answers itself (advisory.go).

// FuzzLockCall describes and answers the advisory-lock calls compat
// recognises (compat.ParseLockCall, whose own FuzzLockCall checks the
// arguments): the descriptions and answers must be well-formed messages
// that agree with the call.
func FuzzLockCall(f *testing.F) {
	f.Add("SELECT pg_advisory_lock($1)", []byte{0, 0, 0, 20}, []byte("42"), []byte(nil), []byte{}, false, int16(0))
	f.Add("select pg_catalog.pg_try_advisory_lock($1, $2) as got", []byte(nil), []byte{0, 0, 0, 1}, []byte{0xff, 0xff, 0xff, 0xff}, []byte{0, 1}, false, int16(1))
	f.Add("SELECT pg_advisory_unlock(7::bigint)", []byte(nil), []byte(nil), []byte(nil), []byte(nil), true, int16(0))
	f.Add("SELECT pg_advisory_xact_lock($2, 3) x", []byte{0, 0, 0, 23, 0, 0, 0, 0}, []byte("1"), []byte(" -2147483648 "), []byte{0, 0}, false, int16(0))
	f.Add("SELECT pg_advisory_unlock_all()", []byte(nil), []byte(nil), []byte(nil), []byte(nil), false, int16(1))
	f.Add("SELECT pg_try_advisory_xact_lock($1)", []byte(nil), []byte{0, 0, 0, 0, 0, 0, 0, 9}, []byte(nil), []byte{0, 1, 0, 0}, true, int16(0))
	f.Fuzz(func(t *testing.T, sql string, oidBytes, p1, p2, formatBytes []byte, null bool, resultFormat int16) {
		call, ok := sqllex.ParseSelectCall(sql)
		if !ok {
			return
		}
		var oids []uint32
		for i := 0; i+4 <= len(oidBytes) && len(oids) < 65535; i += 4 { // decodeParse's limit
			oids = append(oids, binary.BigEndian.Uint32(oidBytes[i:]))
		}
		c, ok := compat.ParseLockCall(call, oids)
		if !ok {
			return
		}
		lc := &lockCall{c}

		// Describe: ParameterDescription and RowDescription.
		var pd pgproto3.ParameterDescription
		msg := lc.appendParameterDescription(nil)
		checkFrame(t, "ParameterDescription", msg, 't')
		if err := pd.Decode(body(msg)); err != nil || !slices.Equal(pd.ParameterOIDs, lc.Params) || int(binary.BigEndian.Uint16(body(msg))) != len(lc.Params) {
			t.Fatalf("ParameterDescription %q reads as %v, %v; want %v", msg, pd.ParameterOIDs, err, lc.Params)
		}
		wantOID, wantSize := uint32(oidVoid), int16(4)
		if lc.ReturnsBool() {
			wantOID, wantSize = oidBool, 1
		}
		column := call.Name
		if call.Alias != "" {
			column = call.Alias
		}
		var rd pgproto3.RowDescription
		msg = lc.appendRowDescription(nil, resultFormat)
		checkFrame(t, "RowDescription", msg, 'T')
		if err := rd.Decode(body(msg)); err != nil || len(rd.Fields) != 1 || string(rd.Fields[0].Name) != column ||
			rd.Fields[0].DataTypeOID != wantOID || rd.Fields[0].DataTypeSize != wantSize || rd.Fields[0].Format != resultFormat {
			t.Fatalf("RowDescription %q reads as %+v, %v", msg, rd.Fields, err)
		}

		// Answer: DataRow then CommandComplete.
		for _, got := range []bool{false, true} {
			out := lc.appendResult(nil, got, resultFormat)
			n := int(binary.BigEndian.Uint32(out[1:5])) + 1
			checkFrame(t, "DataRow", out[:n], 'D')
			checkFrame(t, "CommandComplete", out[n:], 'C')
			var dr pgproto3.DataRow
			if err := dr.Decode(body(out[:n])); err != nil || len(dr.Values) != 1 {
				t.Fatalf("DataRow %q: %+v, %v", out[:n], dr.Values, err)
			}
			var wantValue []byte
			switch {
			case !lc.ReturnsBool():
				wantValue = []byte{}
			case resultFormat == 1 && got:
				wantValue = []byte{1}
			case resultFormat == 1:
				wantValue = []byte{0}
			case got:
				wantValue = []byte("t")
			default:
				wantValue = []byte("f")
			}
			if dr.Values[0] == nil || !bytes.Equal(dr.Values[0], wantValue) {
				t.Fatalf("%q answers %q, want %q", sql, dr.Values[0], wantValue)
			}
			if !bytes.Equal(body(out[n:]), []byte("SELECT 1\x00")) {
				t.Fatalf("%q completes with %q", sql, out[n:])
			}
		}
	})
}
