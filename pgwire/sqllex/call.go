package sqllex

// Call is a statement that is nothing but one function call, as found by
// ParseSelectCall.
type Call struct {
	// Schema is the schema the name is qualified with, folded like any
	// identifier; empty when the name is not qualified.
	Schema string
	// Name is the function's name, folded: "pg_advisory_lock".
	Name string
	// Args are the source texts of the arguments, each trimmed of the
	// whitespace and comments around it: "1::bigint", "$1", "'a,b'".
	Args []string
	// Alias is the output column's name when one is given (folded), else
	// empty; without one, PostgreSQL names the column after the function.
	Alias string
}

// ParseSelectCall recognises a statement that is exactly
// SELECT [schema.]fn(args) [[AS] alias], such as
// SELECT pg_advisory_lock($1) or SELECT pg_catalog.pg_try_advisory_lock(1::bigint) AS got.
// ok is false when anything else is in the statement (FROM, a second
// column, a cast of the result, DISTINCT, ...) or when the name is a
// keyword with its own syntax (coalesce, extract, ...).
func ParseSelectCall(stmt string) (Call, bool) {
	return OneStmt(stmt).SelectCall()
}

func parseSelectCall(r *tokenReader) (c Call, ok bool) {
	if !r.next().IsKeyword("select") {
		return Call{}, false
	}

	t := r.next()
	if r.peek(0).Kind == Dot {
		if c.Schema, ok = colID(t); !ok {
			return Call{}, false
		}
		r.next()
		if c.Name, ok = colLabel(r.next()); !ok {
			return Call{}, false
		}
	} else {
		// type_function_name: not a reserved or column-name keyword.
		if t.Kind == Ident {
			if cat := categoryOf(t.Text); cat == reservedKeyword || cat == colNameKeyword {
				return Call{}, false
			}
		}
		if c.Name, ok = colLabel(t); !ok {
			return Call{}, false
		}
	}

	if r.next().Kind != LParen {
		return Call{}, false
	}
	if r.peek(0).Kind == RParen {
		r.next()
	} else if c.Args, ok = r.parseArgs(); !ok {
		return Call{}, false
	}

	switch t := r.peek(0); {
	case t.IsKeyword("as"):
		r.next()
		if c.Alias, ok = colLabel(r.next()); !ok {
			return Call{}, false
		}
	case t.Kind == QuotedIdent, t.Kind == Ident && categoryOf(t.Text) == notReserved:
		r.next()
		if c.Alias, ok = t.Ident(); !ok {
			return Call{}, false
		}
	}
	if !r.atEnd() {
		return Call{}, false
	}
	return c, true
}

// parseArgs reads the arguments of a call up to and including its closing
// parenthesis, splitting them at commas outside nested parentheses and
// brackets.
func (r *tokenReader) parseArgs() ([]string, bool) {
	var args []string
	depth := 0
	start, end := -1, -1
	for {
		t := r.next()
		switch t.Kind {
		case EOF, Semicolon:
			return nil, false
		case LParen, LBracket:
			depth++
		case RParen, RBracket:
			if depth == 0 {
				if t.Kind != RParen || start < 0 {
					return nil, false
				}
				return append(args, r.src[start:end]), true
			}
			depth--
		case Comma:
			if depth == 0 {
				if start < 0 {
					return nil, false
				}
				args = append(args, r.src[start:end])
				start = -1
				continue
			}
		}
		if t.Unterminated {
			return nil, false
		}
		if start < 0 {
			start = t.Pos
		}
		end = t.End()
	}
}
