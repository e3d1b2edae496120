package pgwire

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Fuzz target for the functions that read and rewrite an upstream's
// ErrorResponse (backend.go, compat.go, errors.go).

// errorField is one field of an ErrorResponse body.
type errorField struct {
	code  byte
	value string
}

// errorFields splits an ErrorResponse body into its fields up to the
// terminator, or up to the first field without a NUL; terminated reports
// whether the body reached its terminating NUL.
func errorFields(b []byte) (fields []errorField, terminated bool) {
	for len(b) > 0 {
		if b[0] == 0 {
			return fields, true
		}
		i := bytes.IndexByte(b[1:], 0)
		if i < 0 {
			return fields, false
		}
		fields = append(fields, errorField{b[0], string(b[1 : 1+i])})
		b = b[2+i:]
	}
	return fields, false
}

// checkFrame fails unless msg is exactly one message of type typ whose
// length field counts it.
func checkFrame(t *testing.T, what string, msg []byte, typ byte) {
	t.Helper()
	if len(msg) < 5 || msg[0] != typ || int(binary.BigEndian.Uint32(msg[1:5]))+1 != len(msg) {
		t.Fatalf("%s is not one %q message: %q", what, typ, msg)
	}
}

// decodedError decodes an ErrorResponse the test expects to be well formed.
func decodedError(t *testing.T, what string, msg []byte) *pgproto3.ErrorResponse {
	t.Helper()
	checkFrame(t, what, msg, 'E')
	er, err := decodeError(msg)
	if err != nil {
		t.Fatalf("%s does not decode: %v (%q)", what, err, msg)
	}
	if fields, terminated := errorFields(body(msg)); !terminated || len(body(msg)) != fieldsLen(fields)+1 {
		t.Fatalf("%s has bytes after its terminator or none: %q", what, msg)
	}
	return er
}

func fieldsLen(fields []errorField) int {
	n := 0
	for _, f := range fields {
		n += len(f.value) + 2
	}
	return n
}

var ignoreUnknownEmpty = cmpopts.EquateEmpty()

// FuzzErrorResponse feeds arbitrary ErrorResponse bodies to the functions
// that read and rewrite an upstream's errors. severityOf and sqlstateOf must
// agree with a plain reading of the fields (the first V, else the last S;
// the first C); renameInError, rewriteError and statementTimeoutError must
// return the message untouched or one well-formed ErrorResponse that
// differs from it in exactly the field they rewrite.
func FuzzErrorResponse(f *testing.F) {
	er := func(fields ...string) []byte {
		var b []byte
		for _, fl := range fields {
			b = append(b, fl...)
			b = append(b, 0)
		}
		return append(b, 0)
	}
	f.Add(er("SERROR", "VERROR", "C26000", `Mprepared statement "`+missingStatementName+`" does not exist`), missingStatementName, "mine", "", false)
	f.Add(er("SERREUR", "VERROR", "C0A000", "Msavepoints are not supported"), "", "", "Aurora DSQL has no temporary tables: use a regular table (with a session key column) and delete its rows afterwards.", false)
	f.Add(er("SFATAL", "VFATAL", "C57014", "Mcanceling statement due to user request", "P12", "Ffile.c", "L42", "Zunknown"), "x", "", "", true)
	f.Add([]byte("SERROR\x00VERROR"), "a", "b", "h", false)
	f.Fuzz(func(t *testing.T, raw []byte, from, to, hint string, forced bool) {
		msg := message('E', raw)
		orig := bytes.Clone(msg)
		fields, terminated := errorFields(raw)

		// severityOf and sqlstateOf read the fields as they come.
		wantSev, gotV := "", false
		var wantCode *string
		for _, fl := range fields {
			switch {
			case fl.code == 'V' && !gotV:
				wantSev, gotV = fl.value, true
			case fl.code == 'S' && !gotV:
				wantSev = fl.value
			case fl.code == 'C' && wantCode == nil:
				wantCode = &fl.value
			}
		}
		if got := severityOf(msg); got != wantSev {
			t.Fatalf("severityOf(%q) = %q, want %q", raw, got, wantSev)
		}
		if got := sqlstateOf(msg); (wantCode == nil && got != "") || (wantCode != nil && got != *wantCode) {
			t.Fatalf("sqlstateOf(%q) = %q, want %v", raw, got, wantCode)
		}

		decoded, derr := decodeError(msg)
		if derr == nil && !terminated {
			t.Fatalf("decodeError accepted %q, which has no terminator", raw)
		}
		if got := errorMessage(msg); derr == nil && got != decoded.Code+": "+decoded.Message || derr != nil && got != "undecodable error" {
			t.Fatalf("errorMessage(%q) = %q", raw, got)
		}

		// Statement names cannot hold NUL (they are C strings).
		from, to = strings.ReplaceAll(from, "\x00", ""), strings.ReplaceAll(to, "\x00", "")
		r := &reply{renameFrom: from, renameTo: to}
		out := renameInError(msg, r)
		if !bytes.Equal(msg, orig) {
			t.Fatal("renameInError changed its input")
		}
		switch {
		case from == "" || derr != nil:
			if !bytes.Equal(out, msg) {
				t.Fatalf("renameInError changed %q with nothing to rename (from %q, decode error %v)", raw, from, derr)
			}
		default:
			got := decodedError(t, "renameInError's result", out)
			want := *decoded
			if to == "" && from == missingStatementName {
				want.Message = "unnamed prepared statement does not exist"
			} else {
				want.Message = strings.ReplaceAll(decoded.Message, `"`+from+`"`, `"`+to+`"`)
			}
			if diff := cmp.Diff(&want, got, ignoreUnknownEmpty); diff != "" {
				t.Fatalf("renameInError(%q, %q→%q) (-want +got):\n%s", raw, from, to, diff)
			}
		}

		// rewriteError: the gateway's own error, a hint on a DSQL
		// refusal, or the message untouched.
		hint = strings.ReplaceAll(hint, "\x00", "")
		rw := &rewrite{hint: hint}
		var force *pgError
		if forced {
			force = &pgError{Severity: severityError, Code: "22023", Message: "forced " + to}
		}
		out = rewriteError(msg, rw, force, sqlstateOf(msg))
		if forced && derr == nil {
			// An error other than the stand-in's is the server's.
			if other := rewriteError(msg, rw, force, "XXXXX"); sqlstateOf(msg) != "XXXXX" && !bytes.Equal(other, msg) {
				t.Fatalf("rewriteError replaced %q, not the stand-in's error", raw)
			}
		}
		switch {
		case forced:
			if !bytes.Equal(out, appendErrorResponse(nil, force)) {
				t.Fatalf("rewriteError with a forced error returned %q", out)
			}
			if got := decodedError(t, "the forced error", out); got.Message != force.Message || severityOf(out) != severityError || sqlstateOf(out) != "22023" {
				t.Fatalf("the forced error reads back as %+v", got)
			}
		case hint != "" && derr == nil && decoded.Code == pgerrcode.FeatureNotSupported && decoded.Hint == "":
			got := decodedError(t, "rewriteError's result", out)
			want := *decoded
			want.Hint = hint
			if diff := cmp.Diff(&want, got, ignoreUnknownEmpty); diff != "" {
				t.Fatalf("rewriteError(%q) with hint %q (-want +got):\n%s", raw, hint, diff)
			}
		default:
			if !bytes.Equal(out, msg) {
				t.Fatalf("rewriteError changed %q (hint %q, decode error %v)", raw, hint, derr)
			}
		}
		if out := rewriteError(msg, nil, nil, failingSQLCode); !bytes.Equal(out, msg) {
			t.Fatalf("rewriteError without a rewrite changed %q", raw)
		}

		out = statementTimeoutError(msg)
		if derr != nil || decoded.Code != "57014" {
			if !bytes.Equal(out, msg) {
				t.Fatalf("statementTimeoutError changed %q", raw)
			}
			return
		}
		got := decodedError(t, "statementTimeoutError's result", out)
		want := *decoded
		want.Message = "canceling statement due to statement timeout"
		if diff := cmp.Diff(&want, got, ignoreUnknownEmpty); diff != "" {
			t.Fatalf("statementTimeoutError(%q) (-want +got):\n%s", raw, diff)
		}
	})
}
