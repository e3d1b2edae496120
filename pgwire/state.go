package pgwire

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/dsqlgate/dsqlgate/internal/compat"
	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
	"github.com/jackc/pgerrcode"
)

// This file is the session-state engine's data: what a client asked for
// (settings, prepared statements) and what each upstream has, and the
// difference between the two. session.go decides when to apply it.

// unknownValue marks a setting whose value on an upstream is not known
// (the client RESET it there): it never equals a desired value, so the next
// sync sets or resets it explicitly.
const unknownValue = "\x00unknown"

// preparedStmt is a statement a client prepared with Parse. It is immutable
// once made, and shared by reply entries that refer to it.
type preparedStmt struct {
	name      string // the client's name; "" is the unnamed statement
	query     string
	paramOIDs []uint32
	// upstream is the gateway-owned name on upstream connections, derived
	// from the text, parameter types and search_path, so that every client
	// preparing the same statement shares one upstream statement. The
	// unnamed statement stays unnamed upstream ("").
	upstream string
	gen      uint64 // the client's unnamed-statement generation, for ""
	kind     sqllex.Kind
	set      *sqllex.SetStmt // when kind is a SET or RESET (and not emulated)
	// rw is what the compatibility layer does with it (nil: nothing);
	// sent is the text sent upstream (query, or rw.text).
	rw   *rewrite
	sent string
	// local: the gateway answers it itself (rw.local); it never exists
	// upstream.
	local bool
	// parsed is when the client prepared it, on parseClock: an upstream
	// copy parsed before then may have been planned against a schema the
	// client's statement never saw (upstreamStmt.parsed).
	parsed uint64
}

// parseClock orders Parses: of client statements, and of the gateway's
// statements on every upstream. A client statement may use an upstream
// copy only if the copy was parsed after it (copyFresh).
var parseClock atomic.Uint64

// queryInfo describes the statements of one simple Query, in order.
type queryInfo struct {
	stmts []stmtInfo
	next  int // index of the statement the next CommandComplete ends
}

// current is the statement whose replies are arriving, or nil.
func (q *queryInfo) current() *stmtInfo {
	if q == nil || q.next >= len(q.stmts) {
		return nil
	}
	return &q.stmts[q.next]
}

type stmtInfo struct {
	kind sqllex.Kind
	set  *sqllex.SetStmt
	rw   *rewrite
	// commitsMidway: the statement can commit part of its work before it
	// ends (occCommitsMidway), so the OCC retry never runs it again.
	commitsMidway bool
}

// localPortal is a portal bound to a statement the gateway answers itself.
type localPortal struct {
	answer       localAnswer
	params       [][]byte // copies of the Bind parameter values
	paramFormats []int16
	resultFormat int16
}

// parseSettings are the settings that change what a statement's text
// means when it is parsed (name resolution, literal input, string lexing):
// a statement parsed under other values is another statement, so their
// values are part of its upstream name.
var parseSettings = [...]string{"search_path", "datestyle", "timezone", "intervalstyle", "standard_conforming_strings"}

// stmtUpstreamNameLocked is the upstream name of the client's statement
// name with text query, prepared now under its current settings: its own
// name where the client has its upstreams to itself (ownNames), else the
// gateway's shared name.
func (e *engine) stmtUpstreamNameLocked(name, query string, oids []uint32) string {
	if e.ownNames() && name != "" {
		return name
	}
	return e.upstreamNameLocked(query, oids)
}

// ownNames: named statements keep the client's names upstream. In session
// mode on a PostgreSQL route the client has its upstream to itself and
// the next client gets it after DISCARD ALL, so nothing is shared, and
// the client sees its statements in pg_prepared_statements by name, gone
// when it closes them, as on PostgreSQL. Elsewhere an upstream serves
// several clients (of one user) over time, and names are the gateway's.
func (e *engine) ownNames() bool { return !e.txPooling && e.plainRoute }

// closeLaterLocked notes that the upstream copy of the client's statement
// name (ownNames) is to be closed before the client's next unit.
func (e *engine) closeLaterLocked(name string) {
	if e.pendingCloses == nil {
		e.pendingCloses = map[string]bool{}
	}
	e.pendingCloses[name] = true
}

// flushClosesLocked sends the Closes closeLaterLocked noted, for the
// names the client has not prepared again and the upstream has.
func (e *engine) flushClosesLocked(us *upstreamState) {
	for name := range e.pendingCloses {
		if e.stmts.get(name) == nil && us.hasStmt(name) {
			us.dropStmt(name)
			e.out = appendClose(e.out, 'S', name)
			e.pushSpeculative(reply{kind: iClose, text: name})
		}
	}
	clear(e.pendingCloses)
}

// upstreamNameLocked is the gateway's shared upstream name of a statement
// the client prepares now, under its current settings.
func (e *engine) upstreamNameLocked(query string, oids []uint32) string {
	var key [len(parseSettings)]string
	for i, name := range parseSettings {
		key[i] = e.gucs.desired[name]
	}
	return upstreamName(query, oids, key[:]...)
}

// upstreamNamePrefix starts the name of every gateway-owned statement.
const upstreamNamePrefix = "dsg_"

// upstreamName derives the gateway-owned name of a statement from its
// text, parameter types and the values of parseSettings.
func upstreamName(query string, oids []uint32, settings ...string) string {
	h := sha256.New()
	for _, v := range settings {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	h.Write([]byte(query))
	h.Write([]byte{0})
	var b [4]byte
	for _, o := range oids {
		binary.BigEndian.PutUint32(b[:], o)
		h.Write(b[:])
	}
	sum := h.Sum(nil)
	return upstreamNamePrefix + hex.EncodeToString(sum[:16])
}

// Bounds on what one client connection keeps (besides the configured
// limits.max_client_statements and limits.max_client_settings): the text of
// its prepared statements and of its settings, in bytes.
const (
	maxClientStatementBytes = 32 << 20
	maxClientSettingBytes   = 1 << 20
)

// clientStmts are a client's named prepared statements, by name, with the
// bytes of text they hold.
type clientStmts struct {
	byName map[string]*preparedStmt
	bytes  int
}

func (c *clientStmts) get(name string) *preparedStmt { return c.byName[name] }

func (c *clientStmts) put(st *preparedStmt) {
	if c.byName == nil {
		c.byName = map[string]*preparedStmt{}
	}
	c.del(st.name)
	c.byName[st.name] = st
	c.bytes += st.size()
}

func (c *clientStmts) del(name string) {
	if st, ok := c.byName[name]; ok {
		c.bytes -= st.size()
		delete(c.byName, name)
	}
}

func (c *clientStmts) clear() {
	clear(c.byName)
	c.bytes = 0
}

// admit returns the error for a new statement st that would take the
// client past max statements or maxClientStatementBytes, or nil.
func (c *clientStmts) admit(st *preparedStmt, max int) *pgError {
	if max > 0 && len(c.byName) >= max {
		return &pgError{Severity: severityError, Code: pgerrcode.ProgramLimitExceeded,
			Message: fmt.Sprintf("too many prepared statements on this connection (limit %d)", max),
			Hint:    "Close statements that are no longer needed; limits.max_client_statements sets the limit."}
	}
	if c.bytes+st.size() > maxClientStatementBytes {
		return &pgError{Severity: severityError, Code: pgerrcode.ProgramLimitExceeded,
			Message: fmt.Sprintf("prepared statements on this connection would hold more than %d bytes of text", maxClientStatementBytes),
			Hint:    "Close statements that are no longer needed."}
	}
	return nil
}

// size is what st costs its session, roughly: its texts and types.
func (st *preparedStmt) size() int {
	n := len(st.name) + len(st.query) + 4*len(st.paramOIDs) + 64
	if st.sent != st.query {
		n += len(st.sent)
	}
	return n
}

// admitSetting returns the error for a SET that would take the client past
// max custom settings (names with a dot) or maxClientSettingBytes, or nil.
func (g *gucState) admitSetting(st *sqllex.SetStmt, max int) *pgError {
	if st == nil || st.Kind != sqllex.SetValue || st.Scope == sqllex.ScopeLocal {
		return nil
	}
	_, exists := g.desired[st.Name]
	custom, bytes := 0, len(st.Name)+len(st.ValueText)
	for name, v := range g.desired {
		if strings.Contains(name, ".") {
			custom++
		}
		if name != st.Name {
			bytes += len(name) + len(v)
		}
	}
	if !exists && max > 0 && strings.Contains(st.Name, ".") && custom >= max {
		return &pgError{Severity: severityError, Code: pgerrcode.ProgramLimitExceeded,
			Message: fmt.Sprintf("too many custom settings on this connection (limit %d)", max),
			Hint:    "limits.max_client_settings sets the limit."}
	}
	if bytes > maxClientSettingBytes {
		return &pgError{Severity: severityError, Code: pgerrcode.ProgramLimitExceeded,
			Message: fmt.Sprintf("settings on this connection would hold more than %d bytes", maxClientSettingBytes)}
	}
	return nil
}

// missingStatementName is what a Bind or Describe of a statement the client
// never prepared is sent upstream as: no upstream ever has it, so the
// server reports the error (with the transaction semantics a real error
// has), and the message is renamed back to the client's name.
const missingStatementName = "dsqlgate_no_such_statement"

// gucState is the settings a client asked for: its startup parameters and
// every SET/RESET that completed, with transaction semantics.
type gucState struct {
	startup map[string]string // name → replayable SQL value text; what RESET returns to
	desired map[string]string // name → replayable SQL value text
	ver     uint64            // bumped whenever desired changes
	// emuStartup and emu are the emulated settings (compat.go), by name:
	// display values kept by the gateway, never sent upstream.
	emuStartup map[string]string
	emu        map[string]string
	// saved (and savedEmu) are desired (and emu) as they were before the
	// first change in the current transaction (nil when there is none); a
	// rollback restores them.
	saved    map[string]string
	savedEmu map[string]string
	txFailed bool // an error happened in the current transaction
	// touched holds names RESET on the attached upstream since it was
	// attached: their value there is not known exactly.
	touched map[string]struct{}
}

func newGUCState(startup, emuStartup map[string]string) *gucState {
	if startup == nil {
		startup = map[string]string{}
	}
	if emuStartup == nil {
		emuStartup = map[string]string{}
	}
	return &gucState{startup: startup, desired: maps.Clone(startup),
		emuStartup: emuStartup, emu: maps.Clone(emuStartup), touched: map[string]struct{}{}}
}

// beforeChange snapshots the settings for a possible rollback.
func (g *gucState) beforeChange() {
	if g.saved == nil {
		g.saved = maps.Clone(g.desired)
		g.savedEmu = maps.Clone(g.emu)
	}
	g.ver++
}

// applyEmulated records a change to an emulated setting that completed.
func (g *gucState) applyEmulated(c *compat.SettingChange) {
	if c == nil || c.Scope == sqllex.ScopeLocal {
		return
	}
	g.beforeChange()
	switch c.Kind {
	case sqllex.SetValue:
		g.emu[c.Name] = c.Value
	default: // SET ... TO DEFAULT, RESET
		if v, ok := g.emuStartup[c.Name]; ok {
			g.emu[c.Name] = v
		} else {
			delete(g.emu, c.Name)
		}
	}
}

// apply records a SET or RESET that completed on the server.
func (g *gucState) apply(st *sqllex.SetStmt) {
	if st == nil || st.Scope == sqllex.ScopeLocal {
		return // SET LOCAL never outlives its transaction
	}
	switch st.Kind {
	case sqllex.SetValue:
		g.beforeChange()
		g.desired[st.Name] = st.ValueText
		delete(g.touched, st.Name) // its value upstream is known again
	case sqllex.SetDefault, sqllex.ResetParam:
		g.beforeChange()
		g.resetOne(st.Name)
	case sqllex.ResetAll:
		g.beforeChange()
		for name := range g.desired {
			g.touched[name] = struct{}{}
		}
		for name := range g.startup {
			g.touched[name] = struct{}{}
		}
		g.desired = maps.Clone(g.startup)
		g.emu = maps.Clone(g.emuStartup)
	}
}

func (g *gucState) resetOne(name string) {
	g.touched[name] = struct{}{}
	if v, ok := g.startup[name]; ok {
		g.desired[name] = v
	} else {
		delete(g.desired, name)
	}
}

// commit ends the current transaction keeping its changes.
func (g *gucState) commit() {
	g.saved, g.savedEmu = nil, nil
	g.txFailed = false
}

// rollback ends the current transaction undoing its changes.
func (g *gucState) rollback() {
	if g.saved != nil {
		g.desired, g.emu = g.saved, g.savedEmu
		g.saved, g.savedEmu = nil, nil
		g.ver++
	}
	g.txFailed = false
}

// endTransaction ends an implicit transaction at ReadyForQuery 'I'.
func (g *gucState) endTransaction() {
	if g.txFailed {
		g.rollback()
	} else {
		g.commit()
	}
}

// upstreamState is what one upstream connection has, as far as the gateway
// knows. It lives in the Upstream's state slot (State, SetState) and is
// touched only by the holder of that connection, under the holding
// session's mu.
type upstreamState struct {
	fr frameReader // reads this upstream's messages
	// gucs are the settings the gateway left on the upstream; a name that
	// is absent has the server's default.
	gucs map[string]string
	// owner and ownerVer: gucs equals owner's desired settings at that
	// version (a cheap way to skip the comparison when nothing changed).
	owner    *engine
	ownerVer uint64
	lastUser string // gateway user whose session last used the upstream
	// stmts holds the gateway-owned statements the upstream has, least
	// recently used at the front.
	stmts    map[string]*list.Element
	stmtsLRU list.List
	// unnamedOwner/unnamedGen identify whose unnamed statement the
	// upstream's unnamed statement is (nil: none, or not known).
	unnamedOwner *engine
	unnamedGen   uint64
	// params are the ParameterStatus values the upstream last reported;
	// paramsVer counts their changes.
	params    map[string]string
	paramsVer uint64
}

func newUpstreamState(fr frameReader, params map[string]string) *upstreamState {
	return &upstreamState{fr: fr, gucs: map[string]string{}, stmts: map[string]*list.Element{}, params: maps.Clone(params)}
}

// upstreamStmt is one gateway-owned statement on an upstream: its name,
// and when the gateway parsed it there (on parseClock; 0: not known).
type upstreamStmt struct {
	name   string
	parsed uint64
}

// hasStmt reports whether the upstream has statement name, and marks it
// recently used.
func (u *upstreamState) hasStmt(name string) bool {
	e, ok := u.stmts[name]
	if ok {
		u.stmtsLRU.MoveToBack(e)
	}
	return ok
}

// copyFresh reports whether the upstream's copy of st may serve it: the
// copy was parsed after the client prepared st. PostgreSQL plans a
// statement against the schema at its Parse; a copy parsed earlier may
// answer "cached plan must not change result type" (0A000) or "cache
// lookup failed for type" (XX000) after a schema change that the client's
// own, later Parse would have seen. (A copy parsed later is what a client
// that prepared again now would get.)
func (u *upstreamState) copyFresh(st *preparedStmt) bool {
	e, ok := u.stmts[st.upstream]
	return ok && e.Value.(*upstreamStmt).parsed > st.parsed
}

// addStmt records that the upstream now has name, parsed now (or soon
// will). When that makes more than max, it returns the least recently used
// names to close.
func (u *upstreamState) addStmt(name string, max int) (evict []string) {
	if e, ok := u.stmts[name]; ok {
		e.Value.(*upstreamStmt).parsed = parseClock.Add(1)
		u.stmtsLRU.MoveToBack(e)
		return nil
	}
	u.stmts[name] = u.stmtsLRU.PushBack(&upstreamStmt{name: name, parsed: parseClock.Add(1)})
	for len(u.stmts) > max {
		e := u.stmtsLRU.Front()
		old := e.Value.(*upstreamStmt).name
		if old == name {
			break
		}
		u.stmtsLRU.Remove(e)
		delete(u.stmts, old)
		evict = append(evict, old)
	}
	return evict
}

// keepStmt records that the upstream still has name after all (a Close
// of it was skipped), as the least recently used statement, parsed at a
// time not known (so it is parsed again before it serves anyone).
func (u *upstreamState) keepStmt(name string) {
	if e, ok := u.stmts[name]; ok {
		e.Value.(*upstreamStmt).parsed = 0
		return
	}
	u.stmts[name] = u.stmtsLRU.PushFront(&upstreamStmt{name: name})
}

func (u *upstreamState) dropStmt(name string) {
	if e, ok := u.stmts[name]; ok {
		u.stmtsLRU.Remove(e)
		delete(u.stmts, name)
	}
}

// stmtNames lists the upstream's statements, least recently used first.
func (u *upstreamState) stmtNames() []string {
	names := make([]string, 0, len(u.stmts))
	for el := u.stmtsLRU.Front(); el != nil; el = el.Next() {
		names = append(names, el.Value.(*upstreamStmt).name)
	}
	return names
}

func (u *upstreamState) dropAllStmts() {
	clear(u.stmts)
	u.stmtsLRU.Init()
	u.unnamedOwner = nil
}

// syncSQL returns the statements that bring an upstream whose settings are
// have to the settings want, as one simple-query string (or "" when they
// already agree). resetAll starts from RESET ALL, for an upstream last used
// by another user whose untracked state must not leak.
func syncSQL(have, want map[string]string, resetAll bool) string {
	var b strings.Builder
	if resetAll {
		b.WriteString("RESET ALL;")
		have = nil
	}
	names := make([]string, 0, len(have)+len(want))
	for n := range want {
		names = append(names, n)
	}
	for n := range have {
		if _, ok := want[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names) // deterministic, for tests and logs
	for _, n := range names {
		w, wok := want[n]
		h, hok := have[n]
		switch {
		case wok && (!hok || h != w):
			b.WriteString("SET ")
			b.WriteString(gucNameSQL(n))
			b.WriteString(" TO ")
			b.WriteString(w)
			b.WriteString(";")
		case !wok && hok:
			b.WriteString("RESET ")
			b.WriteString(gucNameSQL(n))
			b.WriteString(";")
		}
	}
	return b.String()
}

// validGUCName reports whether name (already lower-case) is a plain or
// dotted (custom) parameter name that can be written unquoted.
func validGUCName(name string) bool {
	if name == "" || len(name) > 63*2 {
		return false
	}
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if p == "" {
			return false
		}
		for i, c := range []byte(p) {
			ok := c == '_' || (c >= 'a' && c <= 'z') || (i > 0 && (c >= '0' && c <= '9' || c == '$'))
			if !ok {
				return false
			}
		}
	}
	return true
}

// gucNameSQL writes a parameter name for a SET or RESET statement: each
// dotted part quoted where PostgreSQL needs it, reserved words included
// (an unquoted "all" would turn a RESET of one name into RESET ALL).
func gucNameSQL(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = sqllex.QuoteIdent(p)
	}
	return strings.Join(parts, ".")
}

// startupValueSQL renders a startup parameter's raw value as SQL for
// `SET name TO ...`: search_path as a list of quoted identifiers (split the
// way PostgreSQL splits it), anything else as one string literal.
func startupValueSQL(name, raw string) (string, bool) {
	if name == "search_path" {
		items, err := sqllex.ParseListGUCValue(raw)
		if err != nil {
			return "", false
		}
		if len(items) == 0 {
			return "''", true
		}
		quoted := make([]string, len(items))
		for i, it := range items {
			quoted[i] = sqllex.QuoteIdent(it)
		}
		return strings.Join(quoted, ", "), true
	}
	return sqllex.QuoteLiteral(raw), true
}

// reportedParams are the parameters PostgreSQL reports with
// ParameterStatus (GUC_REPORT) that a client can set.
var reportedParams = map[string]string{
	"application_name":            "application_name",
	"client_encoding":             "client_encoding",
	"datestyle":                   "DateStyle",
	"intervalstyle":               "IntervalStyle",
	"timezone":                    "TimeZone",
	"search_path":                 "search_path", // reported since PostgreSQL 18
	"standard_conforming_strings": "standard_conforming_strings",
}

// parseOptions splits a startup "options" value (-c name=value and
// --name=value, separated by spaces, backslash escaping a space or
// backslash) into settings, as PostgreSQL's pg_split_opts does.
func parseOptions(opts string) map[string]string {
	var words []string
	var cur strings.Builder
	escaped := false
	inWord := false
	for _, c := range opts {
		switch {
		case escaped:
			cur.WriteRune(c)
			escaped = false
			inWord = true
		case c == '\\':
			escaped = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	out := map[string]string{}
	for i := 0; i < len(words); i++ {
		w := words[i]
		var kv string
		switch {
		case w == "-c" && i+1 < len(words):
			i++
			kv = words[i]
		case strings.HasPrefix(w, "-c"):
			kv = w[2:]
		case strings.HasPrefix(w, "--"):
			kv = w[2:]
		default:
			continue
		}
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		out[strings.ToLower(strings.ReplaceAll(name, "-", "_"))] = value
	}
	return out
}
