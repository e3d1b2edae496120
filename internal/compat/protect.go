package compat

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// The lock table out of clients' reach.
//
// The advisory lock table lives on the same cluster as the clients' data,
// and the route's role can write it: a client could delete others' rows
// (freeing their locks under them) or plant rows with an infinite lease
// (blocking a lock for ever). So the gateway refuses, with 42501, any
// client statement (simple Query or Parse) that names the table, however
// it is written: unquoted in any case, quoted, or as a U&"..." identifier
// (sqllex decodes each as PostgreSQL's lexer does), qualified or not.
// Only the table's own name is refused, never its schema: a schema may be
// the application's (public), and no statement reaches the table without
// naming it, whatever the search_path.
//
// A lexical check is sound on Aurora DSQL because a statement can reach a
// table only by naming it in text the gateway sees: DSQL has no PL/pgSQL,
// no DO blocks, no EXECUTE of a string, no triggers and no rules. The one
// routine whose SQL is a string is a SQL-language function or procedure
// (AS $$ ... $$ or AS '...'): in a statement that creates or replaces a
// routine, every string constant's value is lexed as SQL too, and its
// statements checked as the client's own (nested definitions, to a small
// depth, likewise). It is not a security boundary on PostgreSQL, where a
// function could build the name at run time; the lock table is DSQL's
// only. The check assumes the server lexes what the gateway lexes, which
// is why client encodings the gateway cannot read are refused
// (encoding.go).

// protectedTables is every lock table name configured in this process
// (routes register theirs: ProtectLockTable), the default always among
// them: replaced (under protectedMu), never changed in place, so Decide
// reads it without a lock.
var (
	protectedMu     sync.Mutex
	protectedTables atomic.Pointer[[]protectedName]
)

func init() {
	protectedTables.Store(&[]protectedName{protectedNameOf(defaultLockTable)})
}

// protectedName is a protected table's [schema.]table name, as
// identifiers, and whose it is (acme: the ACME certificate storage; else
// the advisory lock table).
type protectedName struct {
	schema, table string
	acme          bool
}

func protectedNameOf(name string) protectedName {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return protectedName{schema: name[:i], table: name[i+1:]}
	}
	return protectedName{table: name}
}

// ProtectLockTable adds a lock table name ([schema.]table, as configured;
// "" is the default) to those client statements may not name. Routes
// register theirs when they are made; a name is never removed (a reload
// that renames the table leaves the old one protected).
func ProtectLockTable(name string) {
	if name == "" {
		name = defaultLockTable
	}
	protect(protectedNameOf(name))
}

// ProtectACMETables adds the tables of client_tls.acme's route: storage
// (table and table_locks, [schema.]table as configured) to those client
// statements may not name: they hold the certificate's private key and
// the ACME account key, and the locks that guard their renewal, on a
// cluster the route's clients reach with the storage's own role.
func ProtectACMETables(table string) {
	for _, name := range []string{table, table + "_locks"} {
		p := protectedNameOf(name)
		p.acme = true
		protect(p)
	}
}

func protect(p protectedName) {
	protectedMu.Lock()
	defer protectedMu.Unlock()
	old := *protectedTables.Load()
	if slices.Contains(old, p) {
		return
	}
	next := append(slices.Clip(old), p)
	protectedTables.Store(&next)
}

func protectedNames() []protectedName { return *protectedTables.Load() }

const lockTableHint = "The advisory lock table is the gateway's own: take and release advisory locks with pg_advisory_lock() and pg_advisory_unlock() (and the other advisory-lock functions)."

const acmeTableHint = "The gateway keeps its TLS certificates, their private keys and its ACME account in this table (client_tls.acme.storage): it is not for clients."

// lockTableRefusal is the error for a statement that names a protected
// table, n.
func lockTableRefusal(name string, n protectedName) *Error {
	if n.acme {
		return &Error{Code: pgerrcode.InsufficientPrivilege,
			Message: "permission denied: " + sqllex.QuoteIdent(name) + " is the gateway's ACME certificate storage",
			Hint:    acmeTableHint}
	}
	return &Error{Code: pgerrcode.InsufficientPrivilege,
		Message: "permission denied: " + sqllex.QuoteIdent(name) + " is the gateway's advisory lock table",
		Hint:    lockTableHint}
}

// maxBodyDepth bounds how deeply routine definitions inside routine
// bodies are followed; a deeper one is refused.
const maxBodyDepth = 4

// touchesLockTable returns the refusal of a statement that names a lock
// table, itself or in the body of a routine it defines; nil for any other.
// An ordinary statement that cannot name one (mayName) is not lexed
// further, and its strings never are.
func touchesLockTable(st sqllex.Stmt) *Error {
	names := protectedNames()
	routine := mayDefineRoutine(st)
	if !routine && !mayName(st.Text, names) {
		return nil
	}
	return lockTableIn(st.Tokens(), names, routine, 0)
}

// lockTableIn checks a statement's tokens (toks) for a lock table's name
// and, when the statement may define a routine, the SQL in each of its
// string constants; depth is how many bodies deep the statement is.
func lockTableIn(toks []sqllex.Token, names []protectedName, routine bool, depth int) *Error {
	for _, t := range toks {
		id, ok := t.Ident()
		if !ok {
			continue
		}
		for _, n := range names {
			if id == n.table {
				return lockTableRefusal(id, n)
			}
		}
	}
	if !routine {
		return nil
	}
	for _, t := range toks {
		if t.Kind != sqllex.String {
			continue
		}
		body, ok := t.StringValue()
		if !ok {
			continue // an invalid constant: the server rejects the statement
		}
		if err := bodyRefusal(body, names, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// bodyRefusal lexes a string constant of a routine definition as the SQL
// of a routine body and checks each of its statements as a client's: the
// lock table's name, a routine defined in it, a change of client_encoding
// (which a SQL function's SET or set_config() would make for the session).
func bodyRefusal(body string, names []protectedName, depth int) *Error {
	var l sqllex.Lexed
	l.Lex(body)
	for i := range l.Len() {
		st := l.Stmt(i)
		routine := mayDefineRoutine(st)
		if routine && depth >= maxBodyDepth {
			return &Error{Code: pgerrcode.FeatureNotSupported,
				Message: "routine definitions nested this deep in routine bodies are not supported through the gateway",
				Hint:    "Define the inner routines with statements of their own."}
		}
		if err := lockTableIn(st.Tokens(), names, routine, depth); err != nil {
			return err
		}
		if err := ClientEncodingRefusal(st, st.Kind()); err != nil {
			return err
		}
	}
	return nil
}

// mayDefineRoutine reports whether st creates or replaces a function or
// procedure, whose body may be SQL in a string constant: CREATE [OR
// REPLACE] {FUNCTION | PROCEDURE}. Any other statement costs a quick byte
// scan for the keyword (which must be written unquoted, in some ASCII
// case).
func mayDefineRoutine(st sqllex.Stmt) bool {
	if !containsFoldASCII(st.Text, "function") && !containsFoldASCII(st.Text, "procedure") {
		return false
	}
	t := st.Leading(4)
	if !t[0].IsKeyword("create") {
		return false
	}
	i := 1
	if t[1].IsKeyword("or") && t[2].IsKeyword("replace") {
		i = 3
	}
	return t[i].IsKeyword("function") || t[i].IsKeyword("procedure")
}

// mayName is a quick test, without lexing, that text could name one of
// names: it contains one of them in any ASCII case, or a U&"..."
// identifier (which can spell a name with escapes).
func mayName(text string, names []protectedName) bool {
	if strings.Contains(text, `&"`) {
		return true
	}
	for _, n := range names {
		if containsFoldASCII(text, n.table) {
			return true
		}
	}
	return false
}

// containsFoldASCII reports whether s contains sub, A-Z and a-z taken as
// equal. It skips to each occurrence of sub's first byte (either case)
// with strings.IndexByte, so a statement without it costs a fast scan.
func containsFoldASCII(s, sub string) bool {
	n := len(sub)
	if n == 0 {
		return true
	}
	lo, up := lowerASCII(sub[0]), upperASCII(sub[0])
	for i := 0; len(s)-i >= n; i++ {
		j := strings.IndexByte(s[i:], lo)
		if up != lo {
			if k := strings.IndexByte(s[i:], up); k >= 0 && (j < 0 || k < j) {
				j = k
			}
		}
		if j < 0 || len(s)-(i+j) < n {
			return false
		}
		i += j
		if equalFold(s[i:i+n], sub) {
			return true
		}
	}
	return false
}

func equalFold(a, b string) bool {
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func upperASCII(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}
