package pgwire

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"
)

// This file is a small in-process model of a PostgreSQL backend, for the
// relay's differential tests (fuzz_relay_test.go): the same client message
// sequence is played against it directly and through the gateway, and the
// replies must agree. It speaks protocol 3.0 with pgproto3 and follows
// PostgreSQL's postgres.c and xact.c closely where the gateway could be
// wrong: the extended-query protocol and its "ignore until Sync" after an
// error, implicit and explicit transactions, prepared statements and
// portals, and settings with transaction semantics.
//
// What it models:
//
//   - Startup: SSLRequest and GSSEncRequest get 'N'; a StartupMessage gets
//     AuthenticationOk (no password is asked for), ParameterStatus values,
//     BackendKeyData and ReadyForQuery 'I'. Startup parameters naming a
//     known setting become that setting's session default (what RESET
//     returns to), as in PostgreSQL.
//   - Transactions as xact.c's block states: none, an implicit transaction
//     (an extended-protocol batch up to Sync, or one simple Query), the
//     implicit block of a multi-statement simple Query, an explicit block
//     (BEGIN), and a failed explicit block (status 'E'), where everything
//     but COMMIT/ROLLBACK fails with 25P02. COMMIT or ROLLBACK outside a
//     block warns and ends the implicit transaction; BEGIN inside a block
//     warns; COMMIT of a failed block answers ROLLBACK.
//   - Errors: an error in Parse, Bind, Describe or Execute makes the
//     backend ignore every message up to the next Sync, simple Query,
//     FunctionCall and Terminate included; an error in a simple Query or
//     FunctionCall is followed by ReadyForQuery. Errors and notices are
//     flushed at once; other output only at Flush, Sync and ReadyForQuery.
//   - Prepared statements: named (not transactional; a second Parse of a
//     name fails 42P05 once the text is accepted) and unnamed (replaced by
//     every unnamed Parse, and dropped by every simple Query). Parse fails
//     42601 for text containing "syntax_error" or more than one statement,
//     42P01 for a SELECT ... FROM (no table exists), 42704 for SHOW of an
//     unknown setting, 25P02 in a failed block unless the statement is
//     COMMIT/ROLLBACK. An unnamed Parse drops the unnamed statement first,
//     so one that fails leaves none.
//   - Portals: created by Bind (the unnamed one replaced silently, a named
//     one that exists fails 42P03), dropped when their transaction ends
//     and marked failed when an explicit block fails; a row-returning
//     portal can be fetched in parts (Execute max rows, PortalSuspended),
//     a utility portal runs once (55000 after). Describe S answers
//     ParameterDescription then RowDescription or NoData, Describe P
//     RowDescription or NoData. Close of a missing statement or portal is
//     not an error.
//   - Settings: SET [SESSION|LOCAL], RESET, RESET ALL, SHOW for the
//     settings in modelSettings and custom (dotted) names, with
//     PostgreSQL's GUC stack at one nesting level (a rollback restores, SET
//     LOCAL ends with its transaction, SET after SET LOCAL wins).
//     ParameterStatus is sent before ReadyForQuery for reported settings
//     that changed.
//   - DEALLOCATE name|ALL, DISCARD ALL (refused in a transaction block or
//     after another Execute of the same implicit transaction, as
//     PreventInTransactionBlock does), FunctionCall (FunctionCallResponse,
//     or 42883 for function OID 0), Terminate.
//
// The statement language (case-insensitive, trimmed; a simple Query is
// split on ';' and empty statements dropped, as PostgreSQL's grammar drops
// them):
//
//	select N                  one row N (column ?column?, int4): SELECT 1
//	select N where false      no row: SELECT 0 (the gateway's placeholderSQL)
//	select ... from ...       42P01 at parse analysis (its failingSQL)
//	select <anything else>    one row with the text after "select"
//	fail                      22012 when executed (Describe: one column)
//	... syntax_error ...      42601 when parsed
//	begin | start transaction BEGIN          commit | end       COMMIT
//	rollback | abort          ROLLBACK
//	set [session|local] NAME {=|to} VALUE | DEFAULT; reset NAME | all; show NAME
//	deallocate [prepare] NAME | all;  discard all
//	(empty)                   EmptyQueryResponse
//	anything else             succeeds with its first word as the tag
//
// What it does not model: parameters (every statement takes none, a Bind
// with values fails 08P01), binary formats, COPY, savepoints, notifications,
// cancel requests (the connection closes), errors at commit time, row
// locking or data of any kind, and the server's own timeouts.
//
// Test hooks: an error raised by a simple-Query statement carries the
// statement's text in its Where field, and one raised by a FunctionCall
// "function OID" (the harness finds the answer to its terminators that way
// even when they fail); killIdle closes the connections of a user that
// wait for a message outside a transaction (so the gateway finds its idle
// upstreams gone, as after a server restart); and each connection notes
// the situations in which the gateway is known to answer differently
// (modelNote*; notes returns them), for the fuzz target's quarantine of
// known gateway bugs.

// modelServer accepts connections and runs a modelConn for each.
type modelServer struct {
	l       net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[*modelConn]struct{}
	closed  bool
	nextPID uint32
	// notes are the ended connections' notes, by process ID, until read.
	ended map[uint32][]string
}

func startModelServer() (*modelServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &modelServer{l: l, conns: map[*modelConn]struct{}{}, ended: map[uint32][]string{}}
	m.wg.Add(1)
	go m.accept()
	return m, nil
}

func (m *modelServer) addr() string { return m.l.Addr().String() }

func (m *modelServer) accept() {
	defer m.wg.Done()
	for {
		conn, err := m.l.Accept()
		if err != nil {
			return
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			conn.Close()
			return
		}
		m.nextPID++
		c := &modelConn{conn: conn, be: pgproto3.NewBackend(conn, conn), pid: m.nextPID, done: make(chan struct{})}
		m.conns[c] = struct{}{}
		m.wg.Add(1)
		m.mu.Unlock()
		go func() {
			defer m.wg.Done()
			defer func() {
				conn.Close()
				m.mu.Lock()
				delete(m.conns, c)
				if len(c.notes) > 0 {
					m.ended[c.pid] = slices.Sorted(maps.Keys(c.notes))
				}
				m.mu.Unlock()
				close(c.done)
			}()
			c.serve()
		}()
	}
}

// close stops the server and every connection, and waits for them.
func (m *modelServer) close() {
	m.mu.Lock()
	m.closed = true
	m.l.Close()
	for c := range m.conns {
		c.conn.Close()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// notes returns (and forgets) the notes of connection pid, once it has
// ended.
func (m *modelServer) notes(pid uint32) []string {
	m.mu.Lock()
	for c := range m.conns {
		if c.pid == pid {
			m.mu.Unlock()
			<-c.done
			m.mu.Lock()
			break
		}
	}
	defer m.mu.Unlock()
	n := m.ended[pid]
	delete(m.ended, pid)
	return n
}

// Notes: situations in which the gateway is known to answer otherwise
// than PostgreSQL (see relayCases' bugs). They are facts about the
// message sequence, noted whether or not the gateway goes wrong.
const (
	modelNoteSkipped     = "a Parse or Close was skipped after an error"
	modelNoteFailedParse = "a named Parse was refused in a failed transaction"
	modelNoteReparse     = "a name was parsed again after its Parse failed"
	modelNoteDeallocate  = "a DEALLOCATE was prepared or run"
	// modelNoteDuplicateInvalid: PostgreSQL reports a Parse's own error
	// before the name's duplication (42P05), which the gateway reports
	// without sending the text upstream.
	modelNoteDuplicateInvalid = "a Parse of an existing name failed for another reason"
)

// killIdle closes the connections of user that are waiting for a message
// with no transaction open, and returns once they are closed: their peer
// has seen the end of the stream by then (FIN, never RST: nothing was left
// unread). It returns how many it closed.
func (m *modelServer) killIdle(user string) int {
	m.mu.Lock()
	var victims []*modelConn
	for c := range m.conns {
		c.mu.Lock()
		if c.waiting && c.user == user && c.block == blockNone {
			victims = append(victims, c)
			c.conn.(*net.TCPConn).CloseWrite() // FIN now
			c.conn.Close()
		}
		c.mu.Unlock()
	}
	m.mu.Unlock()
	for _, c := range victims {
		<-c.done
	}
	return len(victims)
}

// Transaction block states (xact.c's TBLOCK_*, folded).
type modelBlock uint8

const (
	blockNone     modelBlock = iota // TBLOCK_DEFAULT: no transaction
	blockStarted                    // TBLOCK_STARTED: an implicit transaction
	blockImplicit                   // TBLOCK_IMPLICIT_INPROGRESS: a multi-statement Query
	blockOpen                       // TBLOCK_INPROGRESS: after BEGIN
	blockFailed                     // TBLOCK_ABORT: a failed explicit block
)

// modelErr is an error the model raises.
type modelErr struct{ code, msg string }

func mErr(code, format string, args ...any) *modelErr {
	return &modelErr{code: code, msg: fmt.Sprintf(format, args...)}
}

// modelConn is one backend.
type modelConn struct {
	conn net.Conn
	be   *pgproto3.Backend
	pid  uint32
	done chan struct{} // closed when serve has returned

	// mu guards waiting, and user and block while waiting, for killIdle.
	mu      sync.Mutex
	waiting bool // blocked reading the next message
	user    string

	block      modelBlock
	ignoring   bool // skipping until Sync after an extended-protocol error
	pipelining bool // xact.c's XACT_FLAGS_PIPELINING: an Execute completed in this implicit transaction
	stmts      map[string]*modelStmt
	unnamed    *modelStmt
	portals    map[string]*modelPortal
	gucs       modelGUCs
	notes      map[string]bool
	// unnamedParsed: an unnamed Parse came (accepted or not);
	// queryDropped: a simple Query came after it (and no unnamed Parse
	// since); failedNames: named Parses that failed.
	unnamedParsed, queryDropped bool
	failedNames                 map[string]bool
	// stmtText is the simple-Query statement running, for Where.
	stmtText string
	// occ, when set, makes the statement "update occ" (and "call occ()",
	// "do $$occ$$", which stand for a procedure and a DO block) lose optimistic-
	// concurrency conflicts as its script says; doomed: one did, and the
	// transaction block's COMMIT fails.
	occ    *modelOCC
	doomed bool
}

// modelOCC scripts the optimistic-concurrency conflicts of "update occ",
// as DSQL reports them: 40001 with OC000 in the message, at the statement
// or (atCommit, in a transaction block) at its COMMIT.
type modelOCC struct {
	mu        sync.Mutex
	failsLeft int  // conflicts still to lose
	atCommit  bool // the block's COMMIT fails, not the statement
	runs      int  // "update occ" statements run
	dieAt     int  // the run (counted from 1) at which the backend dies instead (0: never)
}

// hit counts a run and reports whether it loses a conflict (die: the
// backend is to die now).
func (o *modelOCC) hit() (fail, die bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.runs++
	if o.runs == o.dieAt {
		return false, true
	}
	if o.failsLeft > 0 {
		o.failsLeft--
		return true, false
	}
	return false, false
}

func (o *modelOCC) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.runs
}

func modelOCCError() *modelErr {
	return mErr("40001", "change conflicts with another transaction, please retry: (OC000)")
}

// modelStmt is an analysed statement.
type modelStmt struct {
	text string
	kind modelKind
	tag  string // CommandComplete tag of a utility (kindOther)
	// select: value of its one row, rows 0 or 1
	value string
	rows  int
	// set, reset, show, deallocate: the name; set: the value items
	name     string
	local    bool
	items    []modelItem
	toDefaul bool
}

type modelKind uint8

const (
	kindEmpty modelKind = iota
	kindSelect
	kindUndefinedTable
	kindFail
	kindBegin
	kindCommit
	kindRollback
	kindSet
	kindReset
	kindResetAll
	kindShow
	kindDeallocate
	kindDeallocateAll
	kindDiscardAll
	kindOCCWrite
	kindOther
)

// returnsRows reports whether the statement has a result description.
func (st *modelStmt) returnsRows() bool {
	switch st.kind {
	case kindSelect, kindUndefinedTable, kindFail, kindShow:
		return true
	}
	return false
}

// exits reports whether the statement may run in a failed block
// (IsTransactionExitStmt).
func (st *modelStmt) exits() bool { return st.kind == kindCommit || st.kind == kindRollback }

func (st *modelStmt) transactional() bool {
	return st.kind == kindBegin || st.kind == kindCommit || st.kind == kindRollback
}

// modelPortal is a bound statement.
type modelPortal struct {
	stmt    *modelStmt
	failed  bool // its explicit block failed (PORTAL_FAILED)
	done    bool // a utility that ran (PORTAL_DONE)
	started bool // rows have been fetched
	left    int  // rows not yet fetched
	value   string
}

// ---- statements ----

var (
	modelSelectInt = regexp.MustCompile(`^select\s+(-?\d+)(\s+where\s+false)?$`)
	modelSetRe     = regexp.MustCompile(`(?is)^set\s+(?:(session|local)\s+)?("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*(?:\.[a-z_][a-z0-9_$]*)?)\s*(?:=|\s+to\s+|\bto\b)\s*(.+)$`)
)

// modelSplit splits a simple Query into its statements (no quoting
// inside our statement language, so a plain split does).
func modelSplit(text string) []string {
	var out []string
	for _, p := range strings.Split(text, ";") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func modelAnalyze(text string) *modelStmt {
	t := strings.TrimSpace(text)
	low := strings.ToLower(t)
	words := strings.Fields(low)
	st := &modelStmt{text: t}
	if len(words) == 0 {
		st.kind = kindEmpty
		return st
	}
	first := words[0]
	second := ""
	if len(words) > 1 {
		second = words[1]
	}
	switch {
	case first == "select":
		switch m := modelSelectInt.FindStringSubmatch(strings.Join(words, " ")); {
		case m != nil:
			st.kind, st.value, st.rows = kindSelect, m[1], 1
			if m[2] != "" {
				st.rows = 0
			}
		case slices.Contains(words, "from"):
			st.kind = kindUndefinedTable
		default:
			st.kind, st.value, st.rows = kindSelect, strings.TrimSpace(t[len("select"):]), 1
		}
	case low == "fail":
		st.kind = kindFail
	case low == "update occ" || low == "call occ()" || low == "do $$occ$$":
		st.kind = kindOCCWrite
	case first == "begin" || (first == "start" && second == "transaction"):
		st.kind = kindBegin
	case first == "commit" || first == "end":
		st.kind = kindCommit
	case first == "rollback" || first == "abort":
		st.kind = kindRollback
	case first == "set":
		st.kind, st.tag = kindOther, "SET" // SET TRANSACTION and the like: no effect here
		if m := modelSetRe.FindStringSubmatch(t); m != nil {
			items, toDefault, ok := modelParseItems(m[3])
			if ok {
				st.kind = kindSet
				st.local = strings.EqualFold(m[1], "local")
				st.name = modelGUCName(m[2])
				st.items, st.toDefaul = items, toDefault
			}
		}
	case first == "reset" && len(words) == 2:
		if second == "all" {
			st.kind = kindResetAll
		} else {
			st.kind, st.name = kindReset, modelGUCName(strings.Fields(t)[1])
		}
	case first == "show" && len(words) == 2:
		st.kind, st.name, st.rows = kindShow, modelGUCName(strings.Fields(t)[1]), 1
	case first == "deallocate" && len(words) >= 2:
		name := strings.Fields(t)[len(words)-1]
		if second == "prepare" && len(words) == 2 {
			name = ""
		}
		switch {
		case strings.EqualFold(name, "all"):
			st.kind = kindDeallocateAll
		case name != "":
			st.kind, st.name = kindDeallocate, modelIdent(name)
		default:
			st.kind, st.tag = kindOther, "DEALLOCATE"
		}
	case first == "discard" && second == "all" && len(words) == 2:
		st.kind = kindDiscardAll
	default:
		st.kind, st.tag = kindOther, strings.ToUpper(first)
	}
	return st
}

// modelParseCheck is what PostgreSQL's raw parser rejects in our language.
func modelParseCheck(text string) *modelErr {
	if strings.Contains(strings.ToLower(text), "syntax_error") {
		return mErr("42601", `syntax error at or near "syntax_error"`)
	}
	return nil
}

// modelIdent reads an SQL identifier: quoted as written, else lower case.
func modelIdent(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	return strings.ToLower(s)
}

// modelGUCName reads a setting name: PostgreSQL folds them to lower case,
// quoted or not.
func modelGUCName(s string) string { return strings.ToLower(modelIdent(s)) }

// modelItem is one item of a SET value list.
type modelItem struct {
	text   string
	quoted bool // a string constant or quoted identifier (case kept)
}

// modelParseItems reads a SET value list: string constants, quoted or
// plain identifiers, numbers; DEFAULT alone.
func modelParseItems(s string) (items []modelItem, toDefault bool, ok bool) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "default") {
		return nil, true, true
	}
	for {
		s = strings.TrimLeft(s, " \t\n")
		if s == "" {
			return nil, false, false
		}
		var it modelItem
		switch q := s[0]; q {
		case '\'', '"':
			var b strings.Builder
			i := 1
			for {
				if i >= len(s) {
					return nil, false, false
				}
				if s[i] == q {
					if i+1 < len(s) && s[i+1] == q {
						b.WriteByte(q)
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			it, s = modelItem{text: b.String(), quoted: true}, s[i:]
		default:
			i := strings.IndexAny(s, ", \t\n")
			if i < 0 {
				i = len(s)
			}
			it, s = modelItem{text: strings.ToLower(s[:i])}, s[i:]
		}
		items = append(items, it)
		s = strings.TrimLeft(s, " \t\n")
		if s == "" {
			return items, false, true
		}
		if s[0] != ',' {
			return nil, false, false
		}
		s = s[1:]
	}
}

// ---- settings ----

// modelSetting is a built-in setting: its default and the name it is
// reported under with ParameterStatus ("" when not reported).
type modelSetting struct {
	def, report string
	list        bool // GUC_LIST_QUOTE: items shown as identifiers
}

var modelSettings = map[string]modelSetting{
	"application_name":            {def: "", report: "application_name"},
	"client_encoding":             {def: "UTF8", report: "client_encoding"},
	"datestyle":                   {def: "ISO, MDY", report: "DateStyle"},
	"timezone":                    {def: "UTC", report: "TimeZone"},
	"intervalstyle":               {def: "postgres", report: "IntervalStyle"},
	"standard_conforming_strings": {def: "on", report: "standard_conforming_strings"},
	"search_path":                 {def: `"$user", public`, list: true},
	"statement_timeout":           {def: "0"},
	"lock_timeout":                {def: "0"},
	"extra_float_digits":          {def: "1"},
}

// Fixed reported values (never SET here).
var modelFixedParams = [][2]string{
	{"server_version", "15.0"},
	{"server_encoding", "UTF8"},
	{"integer_datetimes", "on"},
	{"is_superuser", "on"},
	{"session_authorization", ""},
}

func modelQuoteIdent(s string) string {
	ok := s != ""
	for i := 0; i < len(s) && ok; i++ {
		c := s[i]
		ok = c == '_' || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9')
	}
	if ok {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// gucEntry is one setting's GUC stack entry in the current transaction.
type gucEntry struct {
	state         uint8 // gucSet, gucLocal or gucSetLocal
	prior, masked string
	priorOK       bool // the setting existed before (custom names may not)
}

const (
	gucSet = iota + 1
	gucLocal
	gucSetLocal
)

// modelGUCs is a session's settings: values, session defaults (RESET),
// and the current transaction's stack entries.
type modelGUCs struct {
	cur      map[string]string
	reset    map[string]string
	stack    map[string]*gucEntry
	reported map[string]string // what the client was last told
}

func newModelGUCs(startup map[string]string) modelGUCs {
	g := modelGUCs{cur: map[string]string{}, reset: map[string]string{}, stack: map[string]*gucEntry{}, reported: map[string]string{}}
	for name, s := range modelSettings {
		g.cur[name], g.reset[name] = s.def, s.def
	}
	for name, v := range startup {
		if _, known := modelSettings[name]; known || strings.Contains(name, ".") {
			g.cur[name], g.reset[name] = v, v
		}
	}
	return g
}

func (g *modelGUCs) known(name string) bool {
	_, ok := g.cur[name]
	return ok
}

// set is set_config_option with action SET (local false) or LOCAL.
func (g *modelGUCs) set(name, value string, local bool) {
	e := g.stack[name]
	if e == nil {
		prior, ok := g.cur[name]
		e = &gucEntry{prior: prior, priorOK: ok, state: gucSet}
		if local {
			e.state = gucLocal
		}
		g.stack[name] = e
	} else if !local {
		e.state = gucSet
	} else if e.state == gucSet {
		e.masked = g.cur[name]
		e.state = gucSetLocal
	}
	g.cur[name] = value
	if _, ok := g.reset[name]; !ok {
		g.reset[name] = "" // a custom placeholder: RESET empties it
	}
}

// endTransaction is AtEOXact_GUC.
func (g *modelGUCs) endTransaction(commit bool) {
	for name, e := range g.stack {
		switch {
		case commit && e.state == gucSet:
		case commit && e.state == gucSetLocal:
			g.cur[name] = e.masked
		case e.priorOK:
			g.cur[name] = e.prior
		default:
			g.cur[name] = g.reset[name]
		}
	}
	clear(g.stack)
}

// display is the value SHOW gives for a SET of items.
func modelDisplay(name string, items []modelItem) string {
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = it.text
		if modelSettings[name].list {
			parts[i] = modelQuoteIdent(it.text)
		}
	}
	return strings.Join(parts, ", ")
}

// ---- the connection ----

func (c *modelConn) serve() {
	params, err := c.startup()
	if err != nil {
		return
	}
	c.mu.Lock()
	c.user = params["user"]
	c.mu.Unlock()
	c.open(params)
	if c.be.Flush() != nil {
		return
	}
	for {
		c.mu.Lock()
		c.waiting = true
		c.mu.Unlock()
		msg, err := c.be.Receive()
		c.mu.Lock()
		c.waiting = false
		c.mu.Unlock()
		if err != nil || c.handle(msg) {
			return
		}
	}
}

// open starts a session for a client with startup parameters params: it
// sends what follows authentication, up to the first ReadyForQuery (not
// flushed).
func (c *modelConn) open(params map[string]string) {
	startup := map[string]string{}
	for k, v := range params {
		startup[strings.ToLower(k)] = v
	}
	c.gucs = newModelGUCs(startup)
	c.stmts = map[string]*modelStmt{}
	c.portals = map[string]*modelPortal{}
	c.be.Send(&pgproto3.AuthenticationOk{})
	for _, p := range modelFixedParams {
		c.be.Send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	for name, s := range modelSettings {
		if s.report != "" {
			c.be.Send(&pgproto3.ParameterStatus{Name: s.report, Value: c.gucs.cur[name]})
			c.gucs.reported[name] = c.gucs.cur[name]
		}
	}
	c.be.Send(&pgproto3.BackendKeyData{ProcessID: c.pid, SecretKey: []byte{1, 2, 3, 4}})
	c.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
}

// handle runs one frontend message; quit says the connection ends.
func (c *modelConn) handle(msg pgproto3.FrontendMessage) (quit bool) {
	if c.ignoring {
		switch msg.(type) {
		case *pgproto3.Parse, *pgproto3.Close:
			c.note(modelNoteSkipped)
		}
		if _, ok := msg.(*pgproto3.Sync); !ok {
			return false // everything up to Sync, Query and Terminate included
		}
	}
	switch m := msg.(type) {
	case *pgproto3.Query:
		c.simpleQuery(m.String)
	case *pgproto3.Parse:
		c.extended(c.parse(m.Name, m.Query))
	case *pgproto3.Bind:
		c.extended(c.bind(m.DestinationPortal, m.PreparedStatement, len(m.Parameters)))
	case *pgproto3.Describe:
		c.extended(c.describe(m.ObjectType, m.Name))
	case *pgproto3.Execute:
		c.extended(c.execute(m.Portal, int(m.MaxRows)))
	case *pgproto3.Close:
		c.closeMessage(m.ObjectType, m.Name)
	case *pgproto3.Flush:
		c.flush()
	case *pgproto3.Sync:
		c.ignoring = false
		c.finishXact()
		c.readyForQuery()
	case *pgproto3.FunctionCall:
		c.functionCall(m.Function)
	case *pgproto3.Terminate:
		return true
	default:
		c.sendError(mErr("08P01", "unsupported frontend message %T", msg), "FATAL")
		return true
	}
	return false
}

// startup reads SSLRequest/GSSEncRequest (answered 'N') and the
// StartupMessage.
func (c *modelConn) startup() (map[string]string, error) {
	for {
		msg, err := c.be.ReceiveStartupMessage()
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := c.conn.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		case *pgproto3.StartupMessage:
			return m.Parameters, nil
		default:
			return nil, errors.New("not a startup message")
		}
	}
}

func (c *modelConn) flush() { c.be.Flush() }

func (c *modelConn) note(n string) {
	if c.notes == nil {
		c.notes = map[string]bool{}
	}
	c.notes[n] = true
}

func (c *modelConn) status() byte {
	switch c.block {
	case blockImplicit, blockOpen:
		return 'T'
	case blockFailed:
		return 'E'
	}
	return 'I'
}

// readyForQuery reports changed settings, then ReadyForQuery, and flushes.
func (c *modelConn) readyForQuery() {
	names := make([]string, 0, len(modelSettings))
	for name := range modelSettings {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if s := modelSettings[name]; s.report != "" && c.gucs.reported[name] != c.gucs.cur[name] {
			c.gucs.reported[name] = c.gucs.cur[name]
			c.be.Send(&pgproto3.ParameterStatus{Name: s.report, Value: c.gucs.cur[name]})
		}
	}
	c.be.Send(&pgproto3.ReadyForQuery{TxStatus: c.status()})
	c.flush()
}

func (c *modelConn) sendError(e *modelErr, severity string) {
	c.be.Send(&pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity, Code: e.code, Message: e.msg, Where: c.stmtText})
	c.flush() // PostgreSQL flushes errors and notices at once
}

func (c *modelConn) warn(code, msg string) {
	c.be.Send(&pgproto3.NoticeResponse{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: code, Message: msg})
	c.flush()
}

// ---- transactions ----

// startXact is start_xact_command: an implicit transaction when none is
// open.
func (c *modelConn) startXact() {
	if c.block == blockNone {
		c.block = blockStarted
		c.pipelining = false
	}
}

// finishXact is finish_xact_command: an implicit transaction commits; a
// block goes on.
func (c *modelConn) finishXact() {
	if c.block == blockStarted || c.block == blockImplicit {
		c.endXact(true)
	}
}

// endXact ends the transaction: settings commit or roll back, portals go.
func (c *modelConn) endXact(commit bool) {
	if c.block != blockFailed { // a failed block restored its settings already
		c.gucs.endTransaction(commit)
	}
	clear(c.portals)
	c.block = blockNone
	c.pipelining = false
	c.doomed = false
}

// abortOnError is AbortCurrentTransaction after an error: an implicit
// transaction is rolled back; an explicit block fails (its settings are
// restored now, its portals kept but unusable until ROLLBACK).
func (c *modelConn) abortOnError() {
	switch c.block {
	case blockStarted, blockImplicit:
		c.endXact(false)
	case blockOpen:
		c.gucs.endTransaction(false)
		for _, p := range c.portals {
			p.failed = true
		}
		c.block = blockFailed
	}
}

// extended handles the outcome of an extended-protocol message: an error
// starts skipping until Sync.
func (c *modelConn) extended(e *modelErr) {
	if e == nil {
		return
	}
	c.sendError(e, "ERROR")
	c.abortOnError()
	c.ignoring = true
}

// ---- simple Query ----

func (c *modelConn) simpleQuery(text string) {
	defer func() { c.stmtText = "" }()
	c.startXact()
	c.queryDropped = c.unnamedParsed
	c.unnamed = nil // drop_unnamed_stmt: a simple Query uses the unnamed statement
	fail := func(e *modelErr) {
		c.sendError(e, "ERROR")
		c.abortOnError()
		c.readyForQuery()
	}
	if e := modelParseCheck(text); e != nil {
		c.stmtText = text
		fail(e)
		return
	}
	stmts := modelSplit(text)
	if len(stmts) == 0 {
		c.be.Send(&pgproto3.EmptyQueryResponse{})
		c.finishXact()
		c.readyForQuery()
		return
	}
	implicitBlock := len(stmts) > 1
	for i, text := range stmts {
		c.stmtText = text
		st := modelAnalyze(text)
		if st.kind == kindDeallocate || st.kind == kindDeallocateAll {
			c.note(modelNoteDeallocate)
		}
		if c.block == blockFailed && !st.exits() {
			fail(mErr("25P02", "current transaction is aborted, commands ignored until end of transaction block"))
			return
		}
		c.startXact()
		if implicitBlock && c.block == blockStarted {
			c.block = blockImplicit
		}
		if e := c.analysisError(st); e != nil {
			fail(e)
			return
		}
		delete(c.portals, "") // the statement's portal replaces the unnamed one
		if st.returnsRows() && st.kind != kindFail {
			c.sendRowDescription(st)
		}
		tag, e := c.run(st)
		if e != nil {
			fail(e)
			return
		}
		if st.kind == kindSelect || st.kind == kindShow {
			value := st.value
			if st.kind == kindShow {
				value = c.gucs.cur[st.name]
			}
			for range st.rows {
				c.be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(value)}})
			}
		}
		if i == len(stmts)-1 {
			if c.block == blockImplicit {
				c.block = blockStarted
			}
			c.finishXact()
		} else if st.transactional() {
			c.finishXact()
		}
		c.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
	}
	c.readyForQuery()
}

// run executes a statement (its rows, if any, are the caller's) and
// returns its tag.
func (c *modelConn) run(st *modelStmt) (tag string, e *modelErr) {
	switch st.kind {
	case kindSelect:
		return fmt.Sprintf("SELECT %d", st.rows), nil
	case kindFail:
		return "", mErr("22012", "division by zero")
	case kindShow:
		return "SHOW", nil
	case kindBegin:
		if c.block == blockOpen {
			c.warn("25001", "there is already a transaction in progress")
		}
		c.block = blockOpen
		return "BEGIN", nil
	case kindCommit:
		if c.doomed && c.block == blockOpen {
			c.endXact(false)
			return "", modelOCCError()
		}
		switch c.block {
		case blockFailed:
			c.endXact(false)
			return "ROLLBACK", nil
		case blockStarted, blockImplicit:
			c.warn("25P01", "there is no transaction in progress")
		}
		c.endXact(true)
		return "COMMIT", nil
	case kindRollback:
		if c.block == blockStarted || c.block == blockImplicit {
			c.warn("25P01", "there is no transaction in progress")
		}
		c.endXact(false)
		return "ROLLBACK", nil
	case kindSet:
		if _, known := modelSettings[st.name]; !known && !strings.Contains(st.name, ".") {
			return "", mErr("42704", "unrecognized configuration parameter %q", st.name)
		}
		if st.local && c.block != blockOpen {
			c.warn("25P01", "SET LOCAL can only be used in transaction blocks")
		}
		value := modelDisplay(st.name, st.items)
		if st.toDefaul {
			value = c.gucs.reset[st.name]
		}
		c.gucs.set(st.name, value, st.local)
		return "SET", nil
	case kindReset:
		if !c.gucs.known(st.name) {
			return "", mErr("42704", "unrecognized configuration parameter %q", st.name)
		}
		c.gucs.set(st.name, c.gucs.reset[st.name], false)
		return "RESET", nil
	case kindResetAll:
		c.resetAll()
		return "RESET", nil
	case kindDeallocate:
		if c.stmts[st.name] == nil {
			return "", mErr("26000", "prepared statement %q does not exist", st.name)
		}
		delete(c.stmts, st.name)
		return "DEALLOCATE", nil
	case kindDeallocateAll:
		clear(c.stmts) // the unnamed statement is not among them
		return "DEALLOCATE ALL", nil
	case kindDiscardAll:
		// PreventInTransactionBlock
		switch {
		case c.block == blockImplicit || c.block == blockOpen:
			return "", mErr("25001", "DISCARD ALL cannot run inside a transaction block")
		case c.pipelining:
			return "", mErr("25001", "DISCARD ALL cannot be executed within a pipeline")
		}
		clear(c.portals) // CLOSE ALL (the running portal goes with the commit that follows)
		c.resetAll()
		clear(c.stmts)
		return "DISCARD ALL", nil
	case kindOCCWrite:
		if c.occ == nil {
			return "UPDATE 1", nil
		}
		fail, die := c.occ.hit()
		if die {
			c.conn.Close() // as a server that goes away mid-statement
			return "UPDATE 1", nil
		}
		if fail {
			if !c.occ.atCommit || c.block != blockOpen {
				return "", modelOCCError()
			}
			c.doomed = true
		}
		return "UPDATE 1", nil
	case kindEmpty:
		return "", nil
	}
	return st.tag, nil
}

func (c *modelConn) resetAll() {
	names := make([]string, 0, len(c.gucs.cur))
	for name := range c.gucs.cur {
		names = append(names, name)
	}
	for _, name := range names {
		c.gucs.set(name, c.gucs.reset[name], false)
	}
}

// analysisError is what parse analysis rejects: a missing table, SHOW of
// a setting that does not exist (its result column is named after it).
func (c *modelConn) analysisError(st *modelStmt) *modelErr {
	switch {
	case st.kind == kindUndefinedTable:
		return mErr("42P01", "relation does not exist")
	case st.kind == kindShow && !c.gucs.known(st.name):
		return mErr("42704", "unrecognized configuration parameter %q", st.name)
	}
	return nil
}

func (c *modelConn) sendRowDescription(st *modelStmt) {
	f := pgproto3.FieldDescription{Name: []byte("?column?"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}
	if st.kind == kindShow {
		f = pgproto3.FieldDescription{Name: []byte(st.name), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
	}
	c.be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{f}})
}

// ---- extended protocol ----

func (c *modelConn) parse(name, text string) (e *modelErr) {
	c.startXact()
	if name == "" {
		c.unnamed = nil // dropped before parsing, even if the Parse fails
		c.unnamedParsed, c.queryDropped = true, false
	} else {
		if c.failedNames[name] {
			c.note(modelNoteReparse)
		}
		defer func() {
			if e != nil && e.code != "42P05" && c.stmts[name] != nil {
				c.note(modelNoteDuplicateInvalid)
			}
			switch {
			case e != nil && e.code == "25P02":
				c.note(modelNoteFailedParse)
				fallthrough
			case e != nil:
				if c.failedNames == nil {
					c.failedNames = map[string]bool{}
				}
				c.failedNames[name] = true
			}
		}()
	}
	if strings.HasPrefix(strings.ToLower(strings.TrimSpace(text)), "deallocate") {
		c.note(modelNoteDeallocate)
	}
	if e := modelParseCheck(text); e != nil {
		return e
	}
	parts := modelSplit(text)
	if len(parts) > 1 {
		return mErr("42601", "cannot insert multiple commands into a prepared statement")
	}
	st := modelAnalyze("")
	if len(parts) == 1 {
		st = modelAnalyze(parts[0])
	}
	if st.kind != kindEmpty && c.block == blockFailed && !st.exits() {
		return mErr("25P02", "current transaction is aborted, commands ignored until end of transaction block")
	}
	if e := c.analysisError(st); e != nil {
		return e
	}
	if name == "" {
		c.unnamed = st
	} else {
		if c.stmts[name] != nil {
			return mErr("42P05", "prepared statement %q already exists", name)
		}
		c.stmts[name] = st
	}
	c.be.Send(&pgproto3.ParseComplete{})
	return nil
}

func (c *modelConn) lookupStmt(name string) (*modelStmt, *modelErr) {
	st := c.stmts[name]
	if name == "" {
		st = c.unnamed
	}
	if st == nil {
		if name == "" {
			return nil, mErr("26000", "unnamed prepared statement does not exist")
		}
		return nil, mErr("26000", "prepared statement %q does not exist", name)
	}
	return st, nil
}

func (c *modelConn) bind(portal, stmt string, params int) *modelErr {
	c.startXact()
	st, e := c.lookupStmt(stmt)
	if e != nil {
		return e
	}
	if params != 0 {
		return mErr("08P01", "bind message supplies %d parameters, but prepared statement %q requires 0", params, stmt)
	}
	if c.block == blockFailed && !st.exits() {
		return mErr("25P02", "current transaction is aborted, commands ignored until end of transaction block")
	}
	if portal != "" && c.portals[portal] != nil {
		return mErr("42P03", "cursor %q already exists", portal)
	}
	c.portals[portal] = &modelPortal{stmt: st}
	c.be.Send(&pgproto3.BindComplete{})
	return nil
}

func (c *modelConn) describe(kind byte, name string) *modelErr {
	c.startXact()
	var st *modelStmt
	if kind == 'S' {
		var e *modelErr
		if st, e = c.lookupStmt(name); e != nil {
			return e
		}
	} else {
		p := c.portals[name]
		if p == nil {
			return mErr("34000", "portal %q does not exist", name)
		}
		st = p.stmt
	}
	if c.block == blockFailed && st.returnsRows() {
		return mErr("25P02", "current transaction is aborted, commands ignored until end of transaction block")
	}
	if kind == 'S' {
		c.be.Send(&pgproto3.ParameterDescription{})
	}
	if st.returnsRows() {
		c.sendRowDescription(st)
	} else {
		c.be.Send(&pgproto3.NoData{})
	}
	return nil
}

func (c *modelConn) execute(name string, maxRows int) *modelErr {
	c.startXact()
	p := c.portals[name]
	if p == nil {
		return mErr("34000", "portal %q does not exist", name)
	}
	st := p.stmt
	if st.kind == kindEmpty {
		c.be.Send(&pgproto3.EmptyQueryResponse{})
		return nil
	}
	if c.block == blockFailed && !st.exits() {
		return mErr("25P02", "current transaction is aborted, commands ignored until end of transaction block")
	}
	if p.failed || p.done {
		return mErr("55000", "portal %q cannot be run", name)
	}
	if st.kind == kindSelect || st.kind == kindShow {
		if !p.started {
			if st.kind == kindShow {
				p.value, p.left = c.gucs.cur[st.name], 1
			} else {
				p.value, p.left = st.value, st.rows
			}
			p.started = true
		}
		sent := 0
		for p.left > 0 && (maxRows <= 0 || sent < maxRows) {
			c.be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(p.value)}})
			p.left--
			sent++
		}
		c.pipelining = true
		if maxRows > 0 && sent == maxRows {
			c.be.Send(&pgproto3.PortalSuspended{})
			return nil
		}
		tag := fmt.Sprintf("SELECT %d", sent)
		if st.kind == kindShow {
			tag = "SHOW"
		}
		c.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
		return nil
	}
	tag, e := c.run(st)
	if e != nil {
		return e
	}
	p.done = true
	if st.transactional() || st.kind == kindDiscardAll {
		c.finishXact() // committed at once (DISCARD ALL: XACT_FLAGS_NEEDIMMEDIATECOMMIT)
	} else {
		c.pipelining = true
	}
	c.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
	return nil
}

func (c *modelConn) closeMessage(kind byte, name string) {
	switch {
	case kind == 'S' && name == "":
		c.unnamed = nil
	case kind == 'S':
		delete(c.stmts, name)
	default:
		delete(c.portals, name)
	}
	c.be.Send(&pgproto3.CloseComplete{})
}

func (c *modelConn) functionCall(oid uint32) {
	c.stmtText = fmt.Sprintf("function %d", oid)
	defer func() { c.stmtText = "" }()
	c.startXact()
	var e *modelErr
	switch {
	case c.block == blockFailed:
		e = mErr("25P02", "current transaction is aborted, commands ignored until end of transaction block")
	case oid == 0:
		e = mErr("42883", "function with OID %d does not exist", oid)
	}
	if e != nil {
		c.sendError(e, "ERROR")
		c.abortOnError()
		c.readyForQuery()
		return
	}
	c.be.Send(&pgproto3.FunctionCallResponse{Result: []byte(strconv.FormatUint(uint64(oid), 10))})
	c.finishXact()
	c.readyForQuery()
}
