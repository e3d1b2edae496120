package sqllex

// The scans below look through a whole statement for words rather than
// parse it. The gateway uses them where a statement matters for what it
// contains anywhere (a call of a session-level advisory lock, a temporary
// object) and where a wrong answer only costs an error the server would
// give anyway.

// HasIdent reports whether stmt names an identifier, quoted or not, for
// which match returns true; match is given the name as Token.Ident folds
// it. Strings and comments are not looked into.
func HasIdent(stmt string, match func(name string) bool) bool {
	return OneStmt(stmt).HasIdent(match)
}

// HasIdent is HasIdent(st.Text, match).
func (st Stmt) HasIdent(match func(name string) bool) bool {
	var r tokenReader
	return hasIdent(st.reader(&r), match)
}

func hasIdent(r *tokenReader, match func(string) bool) bool {
	for t := r.next(); t.Kind != EOF; t = r.next() {
		if name, ok := t.Ident(); ok && match(name) {
			return true
		}
	}
	return false
}

// HasKeywords reports whether stmt holds the unquoted keywords words (lower
// case) in a row, comments between them allowed: ON COMMIT DROP, WITH HOLD.
func HasKeywords(stmt string, words ...string) bool {
	return OneStmt(stmt).HasKeywords(words...)
}

// HasKeywords is HasKeywords(st.Text, words...).
func (st Stmt) HasKeywords(words ...string) bool {
	var r tokenReader
	return hasKeywords(st.reader(&r), words)
}

func hasKeywords(r *tokenReader, words []string) bool {
	i := 0
	for t := r.next(); t.Kind != EOF; t = r.next() {
		switch {
		case t.IsKeyword(words[i]):
			i++
			if i == len(words) {
				return true
			}
		case t.IsKeyword(words[0]):
			i = 1
		default:
			i = 0
		}
	}
	return false
}

// PrepareName returns the name a SQL PREPARE gives its statement, folded
// as PostgreSQL folds it: the identifier after a leading PREPARE. ok is
// false when stmt does not start so. It does not tell PREPARE TRANSACTION
// apart (Classify does).
func PrepareName(stmt string) (name string, ok bool) {
	return OneStmt(stmt).PrepareName()
}

// PrepareName is PrepareName(st.Text).
func (st Stmt) PrepareName() (name string, ok bool) {
	var r tokenReader
	return prepareName(st.reader(&r))
}

func prepareName(r *tokenReader) (string, bool) {
	if !r.next().IsKeyword("prepare") {
		return "", false
	}
	return r.next().Ident()
}

// maxIsolationTokens is how far IsolationLevel looks into a statement: a
// BEGIN names its modes among its first words.
const maxIsolationTokens = 65

// IsolationLevel returns the isolation level that the first ISOLATION
// LEVEL among the first 65 tokens of stmt names, in lower case:
// "serializable", "repeatable read", "read committed" or "read
// uncommitted"; "" when there is none. It is meant for BEGIN and START
// TRANSACTION, whose mode list the server checks: a statement it accepts
// names its level this way.
func IsolationLevel(stmt string) string {
	return OneStmt(stmt).IsolationLevel()
}

// IsolationLevel is IsolationLevel(st.Text).
func (st Stmt) IsolationLevel() string {
	var r tokenReader
	return isolationLevel(st.reader(&r))
}

func isolationLevel(r *tokenReader) string {
	for seen := 0; seen+2 < maxIsolationTokens && r.peek(0).Kind != EOF; seen++ {
		if !r.kw(0, "isolation") || !r.kw(1, "level") {
			r.next()
			continue
		}
		first, second := r.peek(2), r.peek(3)
		switch {
		case first.IsKeyword("serializable"):
			return "serializable"
		case seen+3 >= maxIsolationTokens:
		case first.IsKeyword("repeatable") && second.IsKeyword("read"):
			return "repeatable read"
		case first.IsKeyword("read") && second.IsKeyword("committed"):
			return "read committed"
		case first.IsKeyword("read") && second.IsKeyword("uncommitted"):
			return "read uncommitted"
		}
		r.next()
	}
	return ""
}

// Leading returns the statement's first n significant tokens (comments
// left out; EOF tokens past its end), n at most 4: what a rule that looks
// at how a statement begins reads, without scanning further.
func (st Stmt) Leading(n int) [4]Token {
	var r tokenReader
	st.reader(&r)
	var out [4]Token
	for i := range min(n, len(out)) {
		out[i] = r.peek(i)
	}
	return out
}

// StartsWith reports whether stmt's first word (comments skipped) is the
// unquoted keyword word (lower case): CALL, DO.
func StartsWith(stmt, word string) bool {
	return OneStmt(stmt).StartsWith(word)
}

// StartsWith is StartsWith(st.Text, word).
func (st Stmt) StartsWith(word string) bool {
	var r tokenReader
	return st.reader(&r).next().IsKeyword(word)
}
