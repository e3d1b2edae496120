package sqllex

// SetConfigCall is one call of set_config found in a statement by
// Stmt.SetConfigCalls.
type SetConfigCall struct {
	// Start and End are the byte offsets of the call in the statement's
	// Text: from the function's name (its pg_catalog qualification
	// included) to just past its closing parenthesis.
	Start, End int
	// Literal reports that the call is exactly
	// set_config('name', 'value', true|false): a string constant, a string
	// constant and a boolean keyword, nothing else. Value and Local are
	// set only then.
	Literal bool
	// NameKnown reports that the first argument is a lone string
	// constant (followed by a comma), whatever the others are: Name is
	// set then (always when Literal).
	NameKnown bool
	Name      string // the first argument's value, as written (not folded)
	Value     string // the second argument's value
	Local     bool   // is_local
}

// SetConfigCalls returns the calls of set_config (unqualified or
// pg_catalog.set_config) anywhere in the statement, strings and comments
// not looked into: a name followed by an opening parenthesis. A call of
// another schema's set_config is not one. ok is false when the statement
// is not lexically complete (an unterminated string, quoted name or
// comment), whose calls must then be taken as unknown.
func (st Stmt) SetConfigCalls() (calls []SetConfigCall, ok bool) {
	if st.Unterminated || st.endComment {
		return nil, false
	}
	toks := st.Tokens()
	base := st.Start // Tokens' positions count in the whole query
	if st.scan {
		base = 0 // ... or, scanned, in Text
	}
	for i, t := range toks {
		if t.Unterminated {
			return nil, false
		}
		if !isSetConfigName(t) || i+1 >= len(toks) || toks[i+1].Kind != LParen {
			continue
		}
		start := t.Pos
		if i >= 1 && toks[i-1].Kind == Dot {
			if i < 2 || !isName(toks[i-2], "pg_catalog") || i >= 3 && toks[i-3].Kind == Dot {
				continue // another schema's set_config (or a catalog-qualified name)
			}
			start = toks[i-2].Pos
		}
		c := SetConfigCall{Start: start - base}
		end, lit := literalSetConfigArgs(toks[i+2:], &c)
		if lit {
			c.Literal, c.NameKnown = true, true
			c.End = end - base
		} else {
			c = SetConfigCall{Start: c.Start, End: -1}
			if args := toks[i+2:]; len(args) >= 2 && args[0].Kind == String && args[1].Kind == Comma {
				c.Name, c.NameKnown = args[0].StringValue()
			}
		}
		calls = append(calls, c)
	}
	return calls, true
}

// isSetConfigName reports whether t names set_config (quoted or not).
func isSetConfigName(t Token) bool {
	return isName(t, "set_config")
}

func isName(t Token, name string) bool {
	switch t.Kind {
	case Ident:
		return equalFoldASCII(t.Text, name)
	case QuotedIdent:
		n, ok := t.Ident()
		return ok && n == name
	}
	return false
}

// literalSetConfigArgs reads 'name', 'value', true|false) from toks (the
// tokens after the opening parenthesis) into c and returns the offset
// just past the closing parenthesis.
func literalSetConfigArgs(toks []Token, c *SetConfigCall) (end int, ok bool) {
	if len(toks) < 6 || toks[0].Kind != String || toks[1].Kind != Comma || toks[2].Kind != String ||
		toks[3].Kind != Comma || toks[5].Kind != RParen {
		return 0, false
	}
	if c.Name, ok = toks[0].StringValue(); !ok {
		return 0, false
	}
	if c.Value, ok = toks[2].StringValue(); !ok {
		return 0, false
	}
	switch {
	case toks[4].IsKeyword("true"):
		c.Local = true
	case toks[4].IsKeyword("false"):
		c.Local = false
	default:
		return 0, false
	}
	return toks[5].End(), true
}
