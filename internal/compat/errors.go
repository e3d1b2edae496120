package compat

import "github.com/jackc/pgerrcode"

// Error is an error the compatibility layer shows a client: a refusal
// with its hint, or the error PostgreSQL would give for a value the
// gateway checks itself. The session engine turns it into an
// ErrorResponse of severity ERROR (a Warning, NoticeResponse-like, for
// those returned as warnings).
type Error struct {
	Code    string // SQLSTATE
	Message string
	Detail  string
	Hint    string
}

func (e *Error) Error() string { return e.Message + " (SQLSTATE " + e.Code + ")" }

// unsupported is a refusal of something Aurora DSQL cannot do, with the
// alternative in its hint.
func unsupported(msg, hint string) *Error {
	return &Error{Code: pgerrcode.FeatureNotSupported, Message: msg, Hint: hint}
}
