package compat

import (
	"fmt"
	"strings"

	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// Client encodings the gateway cannot read.
//
// The gateway lexes every statement as UTF-8, and each of its lexical
// rules (the lock table's protection, set_config(), the transaction-mode
// rules, OCC retry eligibility) holds only if the server splits the text
// into the same tokens. In the client encodings below a multibyte
// character's second byte can be a backslash or a quote (0x95 0x5C is one
// SJIS character): the server, converting from that encoding, ends a
// string constant where the gateway does not, and runs what the gateway
// took for the inside of a string. So a session may not use them, on any
// route: the gateway refuses setting client_encoding to one of them in the
// startup packet (FATAL), with SET [SESSION | LOCAL] client_encoding, SET
// NAMES and set_config(), all with 0A000.

// unsafeClientEncodings are the client-only encodings of PostgreSQL
// (SJIS, SHIFT_JIS_2004, BIG5, GBK, GB18030, UHC, JOHAB) under every name
// PostgreSQL accepts for them, cleaned as cleanEncodingName cleans them.
var unsafeClientEncodings = map[string]bool{
	"sjis": true, "shiftjis": true, "mskanji": true, "win932": true, "windows932": true,
	"shiftjis2004": true,
	"big5":         true, "win950": true, "windows950": true,
	"gbk": true, "win936": true, "windows936": true,
	"gb18030": true,
	"uhc":     true, "win949": true, "windows949": true,
	"johab": true,
}

// cleanEncodingName is name as PostgreSQL looks encoding names up: ASCII
// letters and digits only, lower case ("Shift-JIS" is "shiftjis").
func cleanEncodingName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unsafeClientEncoding reports whether name is an encoding the gateway
// cannot read statements in.
func unsafeClientEncoding(name string) bool {
	return unsafeClientEncodings[cleanEncodingName(name)]
}

const clientEncodingHint = "The gateway reads statements as UTF-8; use client_encoding UTF8 (or an encoding in which no multibyte character contains a backslash or quote, e.g. LATIN1, EUC_JP)."

// clientEncodingRefusal is the error for setting client_encoding to name.
func clientEncodingRefusal(name string) *Error {
	return &Error{Code: pgerrcode.FeatureNotSupported, Hint: clientEncodingHint,
		Message: fmt.Sprintf("client_encoding %q is not supported through the gateway: in it a multibyte character can contain a backslash or quote", name)}
}

// clientEncodingUnknown is the error for a change of client_encoding whose
// value the gateway cannot tell (a SET it cannot parse, a set_config() of
// an argument that is not a string constant).
func clientEncodingUnknown() *Error {
	return &Error{Code: pgerrcode.FeatureNotSupported, Hint: clientEncodingHint + " Write the encoding as a string constant.",
		Message: "client_encoding can be changed through the gateway only to a constant it can check"}
}

// setConfigNameUnknown is the error for a set_config() call whose
// parameter is known only at run time (a parameter, an expression): it
// could be client_encoding.
func setConfigNameUnknown() *Error {
	return &Error{Code: pgerrcode.FeatureNotSupported,
		Message: "set_config() of a parameter named at run time is not supported through the gateway: it could change client_encoding",
		Hint:    "Write the parameter's name as a string constant: set_config('name', $1, false). " + clientEncodingHint}
}

// StartupClientEncoding is the error for a client's startup parameters
// (names lower-cased, options' -c settings included) that set
// client_encoding to an encoding the gateway cannot read, or nil. The
// caller sends it as a FATAL.
func StartupClientEncoding(params map[string]string) *Error {
	if v, ok := params["client_encoding"]; ok && unsafeClientEncoding(v) {
		return clientEncodingRefusal(v)
	}
	return nil
}

// ClientEncodingRefusal is the error for a statement of kind k that sets
// client_encoding to an encoding the gateway cannot read (SET
// client_encoding, SET NAMES, set_config('client_encoding', ...)), or
// that may set it to a value the gateway cannot tell; nil for any other.
// It applies on every route. Statements that name neither SET nor
// set_config cost a quick scan of their text.
func ClientEncodingRefusal(st sqllex.Stmt, k sqllex.Kind) *Error {
	switch k {
	case sqllex.Set:
		if !containsFoldASCII(st.Text, "encoding") && !containsFoldASCII(st.Text, "names") && !strings.Contains(st.Text, `&"`) {
			return nil // another setting: not parsed twice (Decide parses it)
		}
		set, ok := st.Set()
		if !ok {
			// A SET the parser does not take apart: refused if it may
			// be of client_encoding (PostgreSQL rejects most of these
			// anyway).
			if st.HasIdent(func(n string) bool { return n == "client_encoding" || n == "names" }) {
				return clientEncodingUnknown()
			}
			return nil
		}
		if set.Name != "client_encoding" || set.Kind != sqllex.SetValue {
			return nil
		}
		for _, v := range set.Values {
			if unsafeClientEncoding(v.Str) {
				return clientEncodingRefusal(v.Str)
			}
		}
		return nil
	case sqllex.Reset, sqllex.Show:
		return nil
	}
	if !mayCallSetConfig(st.Text) {
		return nil
	}
	calls, ok := st.SetConfigCalls()
	if !ok {
		return nil // not lexically complete: the server rejects it
	}
	for _, c := range calls {
		switch {
		case !c.NameKnown:
			return setConfigNameUnknown()
		case strings.ToLower(c.Name) != "client_encoding":
		case !c.Literal:
			return clientEncodingUnknown()
		case unsafeClientEncoding(c.Value):
			return clientEncodingRefusal(c.Value)
		}
	}
	return nil
}
