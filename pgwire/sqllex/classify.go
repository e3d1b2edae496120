package sqllex

// Kind is what a statement does, as far as its leading words tell.
type Kind uint8

// The kinds of statement. Other is the zero value.
const (
	Other      Kind = iota // anything not listed below (CREATE, EXPLAIN, CALL, MERGE, DO, ...)
	Begin                  // BEGIN [WORK | TRANSACTION] ..., START TRANSACTION ...
	Commit                 // COMMIT [WORK | TRANSACTION] [AND [NO] CHAIN], END ...
	Rollback               // ROLLBACK [WORK | TRANSACTION] [AND [NO] CHAIN] (not TO), ABORT ...
	Savepoint              // SAVEPOINT x, RELEASE [SAVEPOINT] x, ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] x
	TwoPhase               // PREPARE TRANSACTION 'gid', COMMIT PREPARED 'gid', ROLLBACK PREPARED 'gid'
	Set                    // SET ..., in every form (see ParseSet)
	Reset                  // RESET ...
	Show                   // SHOW ...
	Discard                // DISCARD ...
	Prepare                // PREPARE name [(types)] AS statement
	Execute                // EXECUTE name [(args)]
	Deallocate             // DEALLOCATE [PREPARE] {name | ALL} (see ParseDeallocate)
	Listen                 // LISTEN channel
	Notify                 // NOTIFY channel [, payload]
	Unlisten               // UNLISTEN {channel | *}
	Copy                   // COPY ...
	Declare                // DECLARE cursor ...
	Fetch                  // FETCH ...
	Move                   // MOVE ...
	Close                  // CLOSE {cursor | ALL}
	Truncate               // TRUNCATE ... (see ParseTruncate)
	Lock                   // LOCK [TABLE] ...
	Select                 // SELECT ..., TABLE name
	Insert                 // INSERT ...
	Update                 // UPDATE ...
	Delete                 // DELETE ...
	With                   // WITH ... (a query or data-modifying statement with a WITH clause)
	Values                 // VALUES ...
)

var kindNames = [...]string{
	Other: "Other", Begin: "Begin", Commit: "Commit", Rollback: "Rollback", Savepoint: "Savepoint",
	TwoPhase: "TwoPhase", Set: "Set", Reset: "Reset", Show: "Show", Discard: "Discard",
	Prepare: "Prepare", Execute: "Execute", Deallocate: "Deallocate", Listen: "Listen",
	Notify: "Notify", Unlisten: "Unlisten", Copy: "Copy", Declare: "Declare", Fetch: "Fetch",
	Move: "Move", Close: "Close", Truncate: "Truncate", Lock: "Lock", Select: "Select",
	Insert: "Insert", Update: "Update", Delete: "Delete", With: "With", Values: "Values",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(?)"
}

// simpleKinds maps a statement's first word to its kind where one word is
// enough to tell.
var simpleKinds = map[string]Kind{
	"begin": Begin, "end": Commit, "abort": Rollback,
	"savepoint": Savepoint, "release": Savepoint,
	"set": Set, "reset": Reset, "show": Show, "discard": Discard,
	"execute": Execute, "deallocate": Deallocate,
	"listen": Listen, "notify": Notify, "unlisten": Unlisten,
	"copy": Copy, "declare": Declare, "fetch": Fetch, "move": Move, "close": Close,
	"truncate": Truncate, "lock": Lock,
	"select": Select, "table": Select, "insert": Insert, "update": Update, "delete": Delete,
	"with": With, "values": Values,
}

// Classify returns the kind of the statement stmt (one statement, as from
// SplitStatements; a trailing semicolon is fine). It looks only at the
// leading words, after any comments and opening parentheses: "(SELECT 1)"
// is a Select. It does not check that the rest of the statement is valid.
func Classify(stmt string) Kind {
	return OneStmt(stmt).Kind()
}

func classify(r *tokenReader) Kind {
	parens := false
	for r.peek(0).Kind == LParen {
		r.next()
		parens = true
	}
	t := r.next()
	if t.Kind != Ident {
		return Other
	}
	if parens {
		// Only a query can stand in parentheses.
		switch k := simpleKind(t.Text); k {
		case Select, With, Values:
			return k
		}
		return Other
	}
	switch {
	case t.IsKeyword("start"):
		if r.kw(0, "transaction") {
			return Begin
		}
		return Other
	case t.IsKeyword("commit"):
		if r.kw(0, "prepared") {
			return TwoPhase
		}
		return Commit
	case t.IsKeyword("rollback"):
		if r.kw(0, "prepared") {
			return TwoPhase
		}
		if !r.accept("work") {
			r.accept("transaction")
		}
		if r.kw(0, "to") {
			return Savepoint
		}
		return Rollback
	case t.IsKeyword("prepare"):
		if r.kw(0, "transaction") && r.peek(1).Kind == String {
			return TwoPhase
		}
		return Prepare
	}
	return simpleKind(t.Text)
}

// simpleKind looks up the unquoted word w without allocating.
func simpleKind(w string) Kind {
	const longest = len("deallocate")
	if len(w) > longest {
		return Other
	}
	var buf [longest]byte
	for i := 0; i < len(w); i++ {
		c := w[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return simpleKinds[string(buf[:len(w)])]
}

// ParseDeallocate takes apart DEALLOCATE [PREPARE] {name | ALL}. all is
// set for the ALL form (which DSQL accepts); otherwise name is the
// statement name, case-folded like any identifier. ok is false for
// anything else.
func ParseDeallocate(stmt string) (name string, all bool, ok bool) {
	return OneStmt(stmt).Deallocate()
}

func parseDeallocate(r *tokenReader) (name string, all bool, ok bool) {
	if !r.next().IsKeyword("deallocate") {
		return "", false, false
	}
	// PREPARE is a keyword only when a name or ALL follows it.
	if r.kw(0, "prepare") && !r.atStmtEnd(1) {
		r.next()
	}
	t := r.next()
	if t.IsKeyword("all") {
		all = true
	} else if name, ok = colID(t); !ok {
		return "", false, false
	}
	if !r.atEnd() {
		return "", false, false
	}
	return name, all, true
}
