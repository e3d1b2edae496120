// Package sqllex reads SQL text the way PostgreSQL's own lexer does, and
// recognises the few statements the gateway's session-state engine and DSQL
// compatibility layer act on.
//
// The gateway runs it on every simple Query and every Parse, so it is total
// (any bytes, including invalid UTF-8 and NUL, give an answer and never a
// panic), linear in the length of its input, and allocation-light: a Scanner
// allocates nothing per token, and Token.Text is always a substring of the
// input.
//
// # Lexing
//
// Scanner follows src/backend/parser/scan.l of PostgreSQL 16 with
// standard_conforming_strings = on (DSQL forces it): unquoted identifiers and
// keywords (folded by Token.Ident: ASCII A-Z downcased, other bytes kept,
// truncated to 63 bytes), quoted identifiers ("" escape, U&"..." with an
// optional UESCAPE clause), string constants ('...' with a doubled quote inside, E'...'
// with backslash escapes, U&'...', N'...', B'...', X'...', and constants
// continued across whitespace that holds a newline), dollar-quoted strings,
// numbers (1e-3, .5, 0x1F, 0o17, 0b101, 1_000), positional parameters ($1),
// operators (with PG's rule about a trailing + or -), punctuation, and
// comments (-- to end of line, nested /* */). A quote, dollar quote or
// comment that is never closed runs to the end of the input and is marked
// Unterminated: PostgreSQL rejects such text, and the gateway forwards it
// unchanged so that the server reports the error.
//
// # Statements
//
// SplitStatements cuts a simple Query string where the server's grammar does:
// at every semicolon outside quotes and comments, except inside the
// BEGIN ATOMIC ... END body of CREATE [OR REPLACE] FUNCTION/PROCEDURE.
// Classify names the kind of a statement from its leading words. ParseSet
// (SET and RESET in all their forms), ParseShow, ParseDeallocate,
// ParseSelectCall and ParseTruncate take apart the statements the gateway
// tracks, emulates or refuses; each returns ok = false for anything it does
// not fully recognise, and the caller must then forward the statement
// untouched. HasIdent, HasKeywords, PrepareName and IsolationLevel look
// through a statement for the words the gateway acts on. QuoteIdent,
// QuoteLiteral and ParseListGUCValue turn values back into SQL that is safe
// to replay.
//
// # Lexing once
//
// Lexed.Lex splits a query string and keeps the tokens of each statement; a
// Stmt's methods (Kind, Set, Show, Deallocate, SelectCall, Truncate,
// HasIdent, ...) answer from those tokens what the functions above answer
// from the statement's text, so a query is scanned once however many
// questions are asked of it, and a reused Lexed allocates nothing once its
// buffers have grown. Each grammar is written once, against a reader of
// tokens that either takes them from a Lexed or scans a string as far as the
// parser reads. OneStmt makes a Stmt of a string by the second means, for
// a statement that comes alone (a Parse) and is mostly asked about its
// first words; the string functions are OneStmt and a method.
//
// # What it leaves out
//
// This is not a SQL parser: it builds no syntax tree, resolves no names and
// checks no types, and it never decides whether a statement is valid; the
// server does. It does not know settings that change lexing
// (standard_conforming_strings = off, backslash_quote), client encodings
// other than UTF-8, or psql's meta-commands and :variables. What a statement
// means for the session (which settings DSQL accepts, how a transaction
// changes state) belongs to package pgwire.
//
// Where PostgreSQL versions differ, this package follows 16 (DSQL's): 0x1F
// and 1_000 are numbers and 12abc is one (erroneous) token, where 15 reads
// 0x1F as 0 followed by x1F; \v is whitespace. These differences never
// move a statement boundary. Two token boundaries differ from scan.l on
// purpose: N'x' is one String token (PostgreSQL: NCHAR and 'x'), and a
// UESCAPE clause belongs to the U& token before it (PostgreSQL's grammar
// joins them).
package sqllex
