package sqllex

// TruncateStmt is a TRUNCATE statement taken apart by ParseTruncate.
type TruncateStmt struct {
	Tables []TruncateTable
	// RestartIdentity is set by RESTART IDENTITY (CONTINUE IDENTITY, the
	// default, leaves it unset).
	RestartIdentity bool
	// Cascade is set by CASCADE (RESTRICT, the default, leaves it unset).
	Cascade bool
}

// TruncateTable is one table named by a TRUNCATE.
type TruncateTable struct {
	// Name is the table's name as written, qualified and quoted as in the
	// statement (`public."My Table"`), ready to be put into another
	// statement.
	Name string
	// Only is set by ONLY: descendant tables are not truncated.
	Only bool
}

// ParseTruncate takes apart
// TRUNCATE [TABLE] [ONLY] name [*] [, ...] [RESTART IDENTITY | CONTINUE IDENTITY] [CASCADE | RESTRICT].
// ok is false for anything else.
func ParseTruncate(stmt string) (TruncateStmt, bool) {
	return OneStmt(stmt).Truncate()
}

func parseTruncate(r *tokenReader) (ts TruncateStmt, ok bool) {
	if !r.next().IsKeyword("truncate") {
		return TruncateStmt{}, false
	}
	r.accept("table")
	for {
		var tt TruncateTable
		if r.accept("only") {
			tt.Only = true
			if r.peek(0).Kind == LParen {
				r.next()
				if tt.Name, ok = r.parseQualifiedName(); !ok || r.next().Kind != RParen {
					return TruncateStmt{}, false
				}
			} else if tt.Name, ok = r.parseQualifiedName(); !ok {
				return TruncateStmt{}, false
			}
		} else {
			if tt.Name, ok = r.parseQualifiedName(); !ok {
				return TruncateStmt{}, false
			}
			if isOp(r.peek(0), "*") {
				r.next()
			}
		}
		ts.Tables = append(ts.Tables, tt)
		if r.peek(0).Kind != Comma {
			break
		}
		r.next()
	}
	switch {
	case r.kw(0, "restart") && r.kw(1, "identity"):
		r.next()
		r.next()
		ts.RestartIdentity = true
	case r.kw(0, "continue") && r.kw(1, "identity"):
		r.next()
		r.next()
	}
	switch {
	case r.accept("cascade"):
		ts.Cascade = true
	case r.accept("restrict"):
	}
	if !r.atEnd() {
		return TruncateStmt{}, false
	}
	return ts, true
}
