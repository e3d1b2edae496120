package compat

import (
	"encoding/binary"
	"math"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// Fuzz targets for the advisory-lock calls the gateway answers itself
// (advisory.go): the arguments it reads from the SQL text and from Bind.

var (
	paramRef   = regexp.MustCompile(`^\$[0-9]+$`)    // PostgreSQL's $n
	integerRef = regexp.MustCompile(`^[+-]?[0-9]+$`) // an integer, as int8in and the grammar read it
	lockCasts  = []string{"", "bigint", "int8", "int", "integer", "int4", "pg_catalog.int8", "pg_catalog.int4"}
)

// FuzzParseLockArg checks parseLockArg against what the argument means to
// PostgreSQL: it is a parameter only when written $n (a string constant
// '$1' is text, not a parameter), a constant only when it is an integer
// (written plainly or as a string constant int8 reads), with the value
// written; and every such argument with one of the integer casts is
// recognised.
func FuzzParseLockArg(f *testing.F) {
	for _, s := range []string{"123", "-5", "'123'", "123::bigint", "$1", "$1::int8", " $2 :: INTEGER ", "E' 42 '", "'9223372036854775807'::int8", "$65536", "$0", "1::text", "(1)", "'1'::pg_catalog.int4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		arg, ok := parseLockArg(text)
		base, cast, _ := strings.Cut(text, "::")
		base = strings.TrimSpace(base)
		str, quoted := stringConstant(base)
		castOK := slices.Contains(lockCasts, strings.ToLower(strings.TrimSpace(cast)))

		// What PostgreSQL reads.
		var wantParam int
		var wantValue *big.Int
		switch {
		case quoted:
			if s := strings.TrimSpace(str); integerRef.MatchString(s) {
				wantValue, _ = new(big.Int).SetString(strings.TrimPrefix(s, "+"), 10)
			}
		case paramRef.MatchString(base):
			if n, err := strconv.Atoi(base[1:]); err == nil && n >= 1 && n <= 65535 {
				wantParam = n
			} else {
				wantParam = -1 // there is no such parameter: PostgreSQL refuses it
			}
		case integerRef.MatchString(base):
			wantValue, _ = new(big.Int).SetString(strings.TrimPrefix(base, "+"), 10)
		}
		if wantValue != nil && !wantValue.IsInt64() {
			wantValue = nil // out of bigint's range: PostgreSQL refuses it
		}

		if !ok {
			if castOK && (wantParam > 0 || wantValue != nil) {
				t.Fatalf("parseLockArg(%q) refused an integer argument (param %d, value %v)", text, wantParam, wantValue)
			}
			return
		}
		if !castOK {
			t.Fatalf("parseLockArg(%q) accepted the cast %q", text, cast)
		}
		switch {
		case arg.param != 0:
			if arg.param != wantParam {
				t.Fatalf("parseLockArg(%q) = parameter $%d, but PostgreSQL reads %q as %s", text, arg.param, text, meaning(wantParam, wantValue))
			}
		case wantValue == nil || wantValue.Int64() != arg.value:
			t.Fatalf("parseLockArg(%q) = constant %d, but PostgreSQL reads %q as %s", text, arg.value, text, meaning(wantParam, wantValue))
		}
	})
}

func meaning(param int, value *big.Int) string {
	switch {
	case param > 0:
		return "$" + strconv.Itoa(param)
	case value != nil:
		return "the integer " + value.String()
	}
	return "no integer argument"
}

// bindValue decodes a Bind parameter of an advisory-lock call the way the
// server reads a bigint or integer parameter: text is a decimal integer,
// binary a big-endian int2, int4 or int8.
func bindValue(raw []byte, format int16) (int64, bool) {
	if format == 1 {
		switch len(raw) {
		case 2:
			return int64(int16(binary.BigEndian.Uint16(raw))), true
		case 4:
			return int64(int32(binary.BigEndian.Uint32(raw))), true
		case 8:
			return int64(binary.BigEndian.Uint64(raw)), true
		}
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	return v, err == nil
}

// FuzzLockCall runs a statement through what compat decides for an
// advisory-lock call short of taking the lock: recognising it
// (ParseSelectCall, ParseLockCall), the parameters it describes, and
// resolving its arguments against Bind parameters. The arguments must be
// the values the client bound, with PostgreSQL's rules for format codes;
// anything else must be refused with an SQL error. (pgwire's FuzzLockCall
// checks the messages that describe and answer it.)
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
		lc, ok := ParseLockCall(call, oids)
		if !ok {
			return
		}
		fn, known := lockFunctions[call.Name]
		if !known || fn != lc.fn || len(lc.args) != len(call.Args) {
			t.Fatalf("parseLockCall(%q) = %+v for %+v", sql, lc, call)
		}
		if fn.unlockAll != (len(lc.args) == 0) || len(lc.args) > 2 {
			t.Fatalf("parseLockCall(%q) has %d arguments", sql, len(lc.args))
		}
		maxParam := 0
		for _, a := range lc.args {
			maxParam = max(maxParam, a.param)
		}
		if len(lc.Params) != max(maxParam, len(oids)) {
			t.Fatalf("parseLockCall(%q, %v) describes %d parameters, want %d", sql, oids, len(lc.Params), max(maxParam, len(oids)))
		}
		inferred := uint32(OIDInt8)
		if len(lc.args) == 2 {
			inferred = OIDInt4
		}
		for i, o := range lc.Params {
			want := inferred
			if i < len(oids) && oids[i] != 0 {
				want = oids[i]
			}
			if o != want {
				t.Fatalf("parameter %d of %q is described as type %d, want %d", i+1, sql, o, want)
			}
		}

		// Bind: values by PostgreSQL's rules for format codes.
		params := [][]byte{p1, p2}
		if null {
			params[len(params)-1] = nil
		}
		if len(p2) == 0 && !null {
			params = params[:1] // one parameter bound
		}
		var formats []int16
		for i := 0; i+2 <= len(formatBytes) && len(formats) < 3; i += 2 {
			formats = append(formats, int16(binary.BigEndian.Uint16(formatBytes[i:])))
		}
		vals, perr := lc.Values(params, formats)
		var want []int64
		wantErr := false
		for _, a := range lc.args {
			if a.param == 0 {
				want = append(want, a.value)
				continue
			}
			if a.param > len(params) || params[a.param-1] == nil {
				wantErr = true
				break
			}
			var format int16
			switch len(formats) {
			case 0:
			case 1:
				format = formats[0]
			case len(params):
				format = formats[a.param-1]
			default:
				// PostgreSQL refuses the Bind ("bind message has 3
				// parameter formats but 2 parameters"); the gateway
				// picks a format per parameter.
				return
			}
			if format != 0 && format != 1 {
				return // PostgreSQL refuses it: unsupported format code
			}
			v, ok := bindValue(params[a.param-1], format)
			if !ok {
				wantErr = true
				break
			}
			want = append(want, v)
		}
		if !wantErr && len(want) == 2 {
			for _, v := range want {
				wantErr = wantErr || v < math.MinInt32 || v > math.MaxInt32
			}
		}
		switch {
		case wantErr:
			if perr == nil {
				t.Fatalf("%q with parameters %q formats %v = %v, want an error", sql, params, formats, vals)
			}
			if !slices.Contains([]string{pgerrcode.ProtocolViolation, "22004", "22P03", "22P02", "22003"}, perr.Code) {
				t.Fatalf("%q with parameters %q: error %+v", sql, params, perr)
			}
			return
		case perr != nil:
			t.Fatalf("%q with parameters %q formats %v: %+v, want %v", sql, params, formats, perr, want)
		case !slices.Equal(vals, want):
			t.Fatalf("%q with parameters %q formats %v = %v, want %v", sql, params, formats, vals, want)
		}

	})
}
