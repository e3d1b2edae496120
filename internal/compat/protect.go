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
// table only by naming it in its text: DSQL has no dynamic SQL (no
// PL/pgSQL, no DO blocks, no functions that run SQL text, no EXECUTE of a
// string), no triggers and no rules. It is not a security boundary on
// PostgreSQL, where a function could build the name at run time; the
// lock table is DSQL's only.

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

// protectedName is a lock table's [schema.]table name, as identifiers.
type protectedName struct {
	schema, table string
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
	p := protectedNameOf(name)
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

// lockTableRefusal is the error for a statement that names the lock table.
func lockTableRefusal(name string) *Error {
	return &Error{Code: pgerrcode.InsufficientPrivilege,
		Message: "permission denied: " + sqllex.QuoteIdent(name) + " is the gateway's advisory lock table",
		Hint:    lockTableHint}
}

// touchesLockTable returns the refusal of a statement that names a lock
// table; nil for any other.
func touchesLockTable(st sqllex.Stmt) *Error {
	names := protectedNames()
	if !mayName(st.Text, names) {
		return nil
	}
	for _, t := range st.Tokens() {
		id, ok := t.Ident()
		if !ok {
			continue
		}
		for _, n := range names {
			if id == n.table {
				return lockTableRefusal(id)
			}
		}
	}
	return nil
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
