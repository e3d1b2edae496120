package sqllex

// ParseShow takes apart SHOW name, SHOW ALL, SHOW TIME ZONE, SHOW
// TRANSACTION ISOLATION LEVEL and SHOW SESSION AUTHORIZATION. name is in
// canonical lower case ("timezone", "transaction_isolation",
// "session_authorization", "all", "myapp.tenant"). ok is false for
// anything else.
func ParseShow(stmt string) (name string, ok bool) {
	return OneStmt(stmt).Show()
}

func parseShow(r *tokenReader) (name string, ok bool) {
	if !r.next().IsKeyword("show") {
		return "", false
	}
	switch {
	case r.accept("all"):
		name = "all"
	case r.kw(0, "time") && r.kw(1, "zone"):
		r.next()
		r.next()
		name = "timezone"
	case r.kw(0, "transaction") && r.kw(1, "isolation") && r.kw(2, "level"):
		for range 3 {
			r.next()
		}
		name = "transaction_isolation"
	case r.kw(0, "session") && r.kw(1, "authorization"):
		r.next()
		r.next()
		name = "session_authorization"
	default:
		if name, ok = r.parseParamName(); !ok {
			return "", false
		}
	}
	if !r.atEnd() {
		return "", false
	}
	return name, true
}
