package pgwire

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgerrcode"

	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// This file is the engine's side of the client's messages: each handler
// decides, under session.mu, whether the message is dropped (a batch being
// skipped), answered by the gateway (the compatibility layer, a lost
// transaction, a Close of a statement) or sent upstream, and for the last
// queues the replies it expects before appending the message to out. A
// handler that needs an upstream and has none returns needUpstream before
// it changes anything, so the session can attach one and hand the message
// in again.

// protocolViolation is the FATAL error for a message the gateway cannot
// accept, as PostgreSQL reports it.
func protocolViolation(format string, args ...any) *pgError {
	return &pgError{Severity: severityFatal, Code: pgerrcode.ProtocolViolation, Message: fmt.Sprintf(format, args...)}
}

// malformed is the FATAL error for a message the gateway cannot decode.
func malformed(what string) *pgError {
	return protocolViolation("invalid %s message format", what)
}

// skipping reports whether the client's batch is being dropped until Sync:
// after an error the gateway raised, or one the upstream raised (which
// then ignores everything up to the Sync).
func (e *engine) skipping() bool { return e.skipUntilSync || e.serverSkipping }

// attachFirst is the step for a message that must go upstream while none
// is attached.
func attachFirst(simple bool) (clientStep, error) {
	return clientStep{need: needUpstream, simple: simple}, nil
}

// build runs fn, which queues the replies it expects and appends the
// message to out, or refuses it: a refused message is failed
// (failStatementLocked) and nothing of it goes upstream.
func (e *engine) build(simple bool, fn func(us *upstreamState) *pgError) (clientStep, error) {
	mark := len(e.out)
	if refused := fn(e.us); refused != nil {
		e.out = e.out[:mark]
		e.failStatementLocked(refused, simple)
	}
	return clientStep{}, nil
}

// onQuery handles a simple Query.
func (e *engine) onQuery(msg []byte) (clientStep, error) {
	if e.skipping() {
		return clientStep{}, nil // the server, too, ignores a Query until the batch's Sync
	}
	text, _, ok := readCString(body(msg))
	if !ok {
		return clientStep{}, malformed("Query")
	}
	var qi *queryInfo
	var flags uint8
	var sent string
	if h := e.held; h.qi != nil && h.text == text {
		qi, flags, sent = h.qi, h.flags, h.sent // handed in again after an attach
	} else {
		qi, flags, sent = e.describeQuery(text)
	}
	e.held = heldAnalysis{}
	if pe := e.admitSettings(qi.stmts...); pe != nil {
		e.failStatementLocked(pe, true)
		return clientStep{}, nil
	}
	if e.lostTx {
		return e.lostTxQuery(text)
	}
	if len(qi.stmts) == 1 && qi.stmts[0].rw != nil && qi.stmts[0].rw.local != nil && !e.copyIn {
		// (During COPY FROM STDIN it goes upstream, which refuses it as
		// PostgreSQL does.)
		if e.unitOpen {
			e.endBatchLocked()
		}
		if e.awaitStatus() {
			return clientStep{need: needReplies}, nil
		}
		if e.txStatus != 'E' {
			return clientStep{need: needLocal, local: &localCall{answer: qi.stmts[0].rw.local, inTx: e.txStatus == 'T', simple: true}}, nil
		}
		// In a failed transaction the server refuses it, as PostgreSQL.
	}
	if flags&unitStatements != 0 && e.unsettled() {
		return clientStep{need: needReplies}, nil // its DEALLOCATE reads the statements
	}
	if e.us == nil {
		e.held = heldAnalysis{text: text, qi: qi, flags: flags, sent: sent}
		return attachFirst(true)
	}
	return e.build(true, func(us *upstreamState) *pgError {
		// In an open batch the server skips the Query if a message before
		// it fails, and the unnamed statement it drops stays.
		skippable := e.inBatch && e.unnamed != nil
		if e.inBatch {
			e.occTaint() // a Query ending an extended-protocol batch
		}
		e.beginUnitLocked()
		var sets []*rewrite // a timeout SET applies to the statements after it
		for _, st := range qi.stmts[:max(len(qi.stmts)-1, 0)] {
			sets = append(sets, st.rw)
		}
		e.timeoutChangeLocked(sets...)
		if flags&unitStatements != 0 || skippable {
			// It changes the client's statements when it completes (or is
			// skipped): messages behind it wait for that (unsettled).
			e.markSpeculative()
		}
		// A simple Query destroys the unnamed statement, the client's and
		// the upstream's (unless the server skips it: prev is put back).
		e.pushUnitEnd(reply{kind: rQuery, query: qi, unitStart: e.unitStart, unitFlags: e.unitFlags | flags, began: e.unitBegan, text: text, prev: e.unnamed})
		e.unitOpen = false
		us.unnamedOwner = nil
		e.unnamed = nil
		if sent == text {
			e.out = append(e.out, msg...)
		} else {
			q, start := beginMessage(e.out, 'Q')
			q = appendCString(q, sent)
			e.out = finishMessage(q, start)
		}
		return nil
	})
}

// admitSettings returns the error for SETs that would take the client past
// its bounds on settings, or nil.
func (e *engine) admitSettings(stmts ...stmtInfo) *pgError {
	if !slices.ContainsFunc(stmts, func(st stmtInfo) bool { return st.set != nil }) {
		return nil
	}
	for _, st := range stmts {
		if pe := e.gucs.admitSetting(st.set, e.host.limits().MaxClientSettings); pe != nil {
			return pe
		}
	}
	return nil
}

// lexers are the buffers simple Queries are lexed into: each query is
// lexed once, and everything that reads its statements reads those tokens.
// They are pooled rather than kept per session, so that an idle session
// holds none and a huge query does not pin its tokens to a session.
var lexers = sync.Pool{New: func() any { return new(sqllex.Lexed) }}

// maxPooledQuery is the longest query whose buffers go back to lexers.
const maxPooledQuery = 64 << 10

// lexQuery lexes a simple Query's text; releaseLexed when done with it.
func lexQuery(text string) *sqllex.Lexed {
	lx := lexers.Get().(*sqllex.Lexed)
	lx.Lex(text)
	return lx
}

// releaseLexed gives lx back for reuse, holding nothing of its query.
func releaseLexed(lx *sqllex.Lexed) {
	if len(lx.Text()) <= maxPooledQuery {
		lx.Reset()
		lexers.Put(lx)
	}
}

// describeQuery splits a simple query into statements, notes what the
// session-state engine needs to know of each, and applies the
// compatibility layer's rewrites: sent is the text to send upstream.
func (e *engine) describeQuery(text string) (qi *queryInfo, flags uint8, sent string) {
	lx := lexQuery(text)
	defer releaseLexed(lx)
	n := lx.Len()
	qi = &queryInfo{stmts: make([]stmtInfo, n)}
	var b strings.Builder
	last := 0
	var gone map[string]bool // DEALLOCATEd by the query's statements so far
	goneAll := false
	for i := range n {
		st := lx.Stmt(i)
		k := st.Kind()
		info := &qi.stmts[i]
		info.kind = k
		flags |= unitFlagsFor(k)
		info.commitsMidway = occCommitsMidway(st, k)
		info.rw = e.compatRewrite(st, k, nil)
		if d := info.rw.deallocation(); d != nil {
			// Checked as the statement will run: after the query's earlier
			// DEALLOCATEs.
			pe := e.deallocateMissing(d)
			if pe == nil && !d.All && (goneAll || gone[d.Name]) {
				pe = statementMissing(d.Name)
			}
			if pe != nil {
				info.rw = &rewrite{text: failingSQL, err: pe}
			} else if d.All {
				goneAll = true
			} else {
				if gone == nil {
					gone = map[string]bool{}
				}
				gone[d.Name] = true
			}
		}
		if info.rw != nil && info.rw.text != "" && (n > 1 || info.rw.local == nil) {
			b.WriteString(text[last:st.Start])
			b.WriteString(info.rw.text)
			last = st.End
			continue
		}
		if (k == sqllex.Set || k == sqllex.Reset) && info.rw == nil {
			if set, ok := st.Set(); ok {
				info.set = &set
			}
		}
	}
	if last == 0 {
		return qi, flags, text
	}
	b.WriteString(text[last:])
	return qi, flags, b.String()
}

// failStatementLocked reports an error the gateway raises for a client
// statement. Inside a transaction on an attached upstream it makes the
// upstream fail a statement too, so the transaction is failed there as
// it is for the client; elsewhere the gateway answers alone.
func (e *engine) failStatementLocked(pe *pgError, simple bool) {
	// Outside a transaction and with nothing of the batch sent upstream,
	// the gateway answers alone; otherwise the upstream must fail too, or
	// it would commit what the batch sent before the error. (txStatus is
	// what the client last saw: with replies still owed it may be about
	// to change, so only the upstream can tell.)
	if e.us == nil || (e.txStatus == 'I' && !e.inBatch && e.q.len() == 0) {
		e.answerErrorLocked(pe, simple)
		return
	}
	e.occTaint()
	e.beginUnitLocked()
	if simple {
		e.pushUnitEnd(reply{kind: rQuery, query: &queryInfo{stmts: []stmtInfo{{rw: &rewrite{err: pe}}}}, unitStart: e.unitStart, unitFlags: e.unitFlags})
		e.unitOpen = false
		q, start := beginMessage(e.out, 'Q')
		q = appendCString(q, failingSQL)
		e.out = finishMessage(q, start)
		return
	}
	e.inBatch = true
	e.q.push(reply{kind: iParse, err: pe})
	p, start := beginMessage(e.out, 'P')
	p = appendCString(p, "dsqlgate_refused")
	p = appendCString(p, failingSQL)
	p = appendInt16(p, 0)
	e.out = finishMessage(p, start)
}

// onParse handles a Parse: named statements get a gateway-owned upstream
// name and are parsed upstream only when that upstream lacks them;
// statements the gateway answers itself never go upstream.
func (e *engine) onParse(msg []byte) (clientStep, error) {
	if e.skipping() {
		return clientStep{}, nil
	}
	p, ok := decodeParse(msg)
	if !ok {
		return clientStep{}, malformed("Parse")
	}
	st := e.held.st
	if st == nil || st.name != p.name || st.query != p.query || !slices.Equal(st.paramOIDs, p.oids) {
		st = e.describeParse(p)
	} // else: handed in again after an attach
	e.held = heldAnalysis{}
	if pe := e.admitSettings(stmtInfo{set: st.set}); pe != nil {
		e.failStatementLocked(pe, false)
		return clientStep{}, nil
	}
	if e.lostTx {
		e.lostTxParse(st)
		return clientStep{}, nil
	}
	if e.unsettled() {
		return clientStep{need: needReplies}, nil
	}
	if st.local {
		if e.awaitStatus() {
			return clientStep{need: needReplies}, nil
		}
		if e.statusAhead() == 'E' {
			e.failStatementLocked(inFailedTransaction(), false)
			return clientStep{}, nil
		}
		if pe := e.localParseLocked(st); pe != nil {
			e.failStatementLocked(pe, false)
		}
		return clientStep{}, nil
	}
	if e.us == nil {
		e.held = heldAnalysis{st: st}
		return attachFirst(false)
	}
	return e.build(false, func(us *upstreamState) *pgError {
		return e.parseLocked(us, msg, p, st)
	})
}

// describeParse notes what the engine needs to know of a Parse's statement
// and applies the compatibility layer's rewrite.
func (e *engine) describeParse(p parseMessage) *preparedStmt {
	// One statement, asked mostly about its first words: scanned as far
	// as each question needs rather than lexed whole.
	q := sqllex.OneStmt(p.query)
	kind := q.Kind()
	st := &preparedStmt{name: p.name, query: p.query, sent: p.query, paramOIDs: p.oids, kind: kind, parsed: parseClock.Add(1)}
	st.rw = e.compatRewrite(q, kind, p.oids)
	switch {
	case st.rw != nil && st.rw.local != nil:
		st.local = true
	case st.rw != nil && st.rw.text != "":
		st.sent = st.rw.text
	case kind == sqllex.Set || kind == sqllex.Reset:
		if set, ok := q.Set(); ok {
			st.set = &set
		}
	}
	return st
}

// parseMessage is a decoded Parse. rest holds the query, the parameter
// count and types as they were sent (to copy into a renamed Parse).
type parseMessage struct {
	name  string
	query string
	oids  []uint32
	rest  []byte
}

func decodeParse(msg []byte) (parseMessage, bool) {
	var p parseMessage
	name, rest, ok := readCString(body(msg))
	if !ok {
		return p, false
	}
	p.name, p.rest = name, rest
	query, rest, ok := readCString(rest)
	if !ok || len(rest) < 2 {
		return p, false
	}
	p.query = query
	n := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 4*n {
		return p, false
	}
	if n > 0 {
		p.oids = make([]uint32, n)
		for i := range p.oids {
			p.oids[i] = binary.BigEndian.Uint32(rest[4*i:])
		}
	}
	return p, true
}

// appendParse appends a Parse of statement st under the upstream name.
func appendParse(dst []byte, upstream string, st *preparedStmt) []byte {
	dst, start := beginMessage(dst, 'P')
	dst = appendCString(dst, upstream)
	dst = appendCString(dst, st.sent)
	dst = appendInt16(dst, int16(len(st.paramOIDs)))
	for _, o := range st.paramOIDs {
		dst = appendInt32(dst, int32(o))
	}
	return finishMessage(dst, start)
}

func appendClose(dst []byte, kind byte, name string) []byte {
	dst, start := beginMessage(dst, 'C')
	dst = append(dst, kind)
	dst = appendCString(dst, name)
	return finishMessage(dst, start)
}

// parseLocked builds the upstream side of a client Parse.
func (e *engine) parseLocked(us *upstreamState, msg []byte, p parseMessage, st *preparedStmt) *pgError {
	e.beginUnitLocked()
	e.inBatch = true
	switch existing := e.stmts.get(p.name); {
	case p.name == "":
		prev := e.unnamed
		e.unnamedGen++
		st.gen = e.unnamedGen
		e.unnamed = st
		us.unnamedOwner, us.unnamedGen = e, st.gen
		e.pushSpeculative(reply{kind: rParse, stmt: st, prev: prev})
		if st.sent == p.query {
			e.out = append(e.out, msg...)
		} else {
			e.out = appendParse(e.out, "", st)
		}
	case existing != nil:
		// PostgreSQL parses the text before it looks at the name: an
		// invalid text, or a failed transaction, gets its own error, and
		// only a text that would be accepted gets 42P05. So the text goes
		// upstream as the unnamed statement (never under the existing
		// statement's shared name, which would then hold this text for
		// everyone using it), its ParseComplete swallowed, and a failing
		// statement behind it reports the duplicate.
		us.unnamedOwner = nil
		e.out = appendParse(e.out, "", st)
		e.q.push(reply{kind: iParse})
		// The stand-in is a syntax error: it fails even in a failed
		// transaction (where the probe got 25P02 unless the text is
		// COMMIT or ROLLBACK, which PostgreSQL also prepares there).
		e.q.push(reply{kind: iParse, err: duplicateStatement(p.name), standIn: syntaxErrorCode})
		d, start := beginMessage(e.out, 'P')
		d = appendCString(d, "dsqlgate_refused")
		d = appendCString(d, syntaxErrorSQL)
		d = appendInt16(d, 0)
		e.out = finishMessage(d, start)
	default:
		// In a failed transaction, or with replies owed (the status this
		// Parse will meet upstream is not known yet), the upstream decides
		// whether PostgreSQL would accept it: its text's own errors come
		// first, then 25P02 unless it is COMMIT or ROLLBACK.
		settled := e.q.len() == 0 && e.txStatus != 'E'
		if pe := e.stmts.admit(st, e.host.limits().MaxClientStatements); pe != nil {
			return pe
		}
		st.upstream = e.stmtUpstreamNameLocked(st.name, st.sent, p.oids)
		e.stmts.put(st)
		switch {
		case us.hasStmt(st.upstream) && settled:
			// The upstream's copy was parsed before this Parse, perhaps
			// against another schema: parse it again, as PostgreSQL would
			// parse the client's text now. Its errors are the client's.
			e.refreshLocked(us, st)
			e.pushSpeculative(reply{kind: rParse, stmt: st})
		case us.hasStmt(st.upstream):
			// The upstream has the statement, but whether PostgreSQL would
			// accept this Parse depends on what runs before it (an error
			// makes the server skip it, a failed transaction refuses it):
			// the same text parsed as the unnamed statement asks the
			// upstream. Its ParseComplete or error is the client's.
			us.unnamedOwner = nil
			e.out = appendParse(e.out, "", st)
			e.pushSpeculative(reply{kind: rParse, stmt: st, probe: true})
		default:
			e.evictLocked(us.addStmt(st.upstream, e.host.maxPrepared()))
			e.out = appendParse(e.out, st.upstream, st)
			e.pushSpeculative(reply{kind: rParse, stmt: st})
		}
	}
	return nil
}

func inFailedTransaction() *pgError {
	return &pgError{Severity: severityError, Code: pgerrcode.InFailedSQLTransaction, Message: inFailedTxMessage}
}

func duplicateStatement(name string) *pgError {
	return &pgError{Severity: severityError, Code: pgerrcode.DuplicatePreparedStatement, Message: fmt.Sprintf("prepared statement %q already exists", name)}
}

// localParseLocked records a statement the gateway answers itself.
func (e *engine) localParseLocked(st *preparedStmt) *pgError {
	r := reply{kind: sParseComplete, stmt: st}
	switch {
	case st.name == "":
		r.prev = e.unnamed
		e.unnamedGen++
		st.gen = e.unnamedGen
		e.unnamed = st
	case e.stmts.get(st.name) != nil:
		return duplicateStatement(st.name)
	default:
		if pe := e.stmts.admit(st, e.host.limits().MaxClientStatements); pe != nil {
			return pe
		}
		e.stmts.put(st)
	}
	e.queueLocked(r)
	return nil
}

// evictLocked closes upstream statements pushed out of the upstream's LRU.
func (e *engine) evictLocked(names []string) {
	for _, n := range names {
		e.out = appendClose(e.out, 'S', n)
		e.pushSpeculative(reply{kind: iClose, text: n})
	}
}

// ensureStmtLocked injects a Parse of st before the message being built
// when the attached upstream lacks it.
func (e *engine) ensureStmtLocked(us *upstreamState, st *preparedStmt) {
	if st.name == "" {
		if us.unnamedOwner == e && us.unnamedGen == st.gen {
			return
		}
		e.out = appendParse(e.out, "", st)
		e.pushSpeculative(reply{kind: iParse, stmt: st})
		us.unnamedOwner, us.unnamedGen = e, st.gen
		return
	}
	switch {
	case us.copyFresh(st):
		us.hasStmt(st.upstream) // recently used
		return
	case us.hasStmt(st.upstream):
		e.refreshLocked(us, st)
	default:
		e.evictLocked(us.addStmt(st.upstream, e.host.maxPrepared()))
		e.out = appendParse(e.out, st.upstream, st)
	}
	e.pushSpeculative(reply{kind: iParse, stmt: st})
}

// refreshLocked replaces the upstream's copy of st, parsed before the
// client prepared st, with a fresh one: a Close and a Parse under the same
// name. The caller queues the Parse's reply. If the server skips both,
// undoing them leaves the old copy recorded, parsed at a time not known;
// if the Parse fails, the upstream has no copy.
func (e *engine) refreshLocked(us *upstreamState, st *preparedStmt) {
	e.out = appendClose(e.out, 'S', st.upstream)
	e.pushSpeculative(reply{kind: iClose, text: st.upstream})
	us.addStmt(st.upstream, e.host.maxPrepared()) // stamps it parsed now
	e.out = appendParse(e.out, st.upstream, st)
}

// lookupStmtLocked finds the client's statement by name (nil if none).
func (e *engine) lookupStmtLocked(name string) *preparedStmt {
	if name == "" {
		return e.unnamed
	}
	return e.stmts.get(name)
}

// stmtTargetLocked returns the upstream name for a client's statement
// reference, injecting a Parse when needed, and the error rename for a
// missing one.
func (e *engine) stmtTargetLocked(name string) (upstream string, st *preparedStmt, renameFrom, renameTo string) {
	st = e.lookupStmtLocked(name)
	if st == nil {
		// Let the upstream report the missing statement (with a real
		// error's transaction semantics), then show the client's name.
		return missingStatementName, nil, missingStatementName, name
	}
	e.ensureStmtLocked(e.us, st)
	return st.upstream, st, "", ""
}

// onBind handles a Bind: the statement name is mapped to the upstream's.
func (e *engine) onBind(msg []byte) (clientStep, error) {
	if e.skipping() {
		return clientStep{}, nil
	}
	portal, rest, ok := readCString(body(msg))
	if !ok {
		return clientStep{}, malformed("Bind")
	}
	stmtName, params, ok := readCString(rest)
	if !ok {
		return clientStep{}, malformed("Bind")
	}
	if e.lostTx {
		e.lostTxBind(portal, stmtName)
		return clientStep{}, nil
	}
	if e.unsettled() {
		return clientStep{need: needReplies}, nil
	}
	if local := e.lookupStmtLocked(stmtName); local != nil && local.local {
		if e.awaitStatus() {
			return clientStep{need: needReplies}, nil
		}
		if e.statusAhead() == 'E' {
			e.failStatementLocked(inFailedTransaction(), false)
			return clientStep{}, nil
		}
		return clientStep{}, e.localBind(portal, local, params)
	}
	if e.us == nil {
		return attachFirst(false)
	}
	return e.build(false, func(us *upstreamState) *pgError {
		if pe := e.admitPortal(portal); pe != nil {
			return pe
		}
		e.beginUnitLocked()
		e.inBatch = true
		delete(e.localPortals, portal)
		upstream, st, from, to := e.stmtTargetLocked(stmtName)
		b, start := beginMessage(e.out, 'B')
		b = appendCString(b, portal)
		b = appendCString(b, upstream)
		b = append(b, params...)
		e.out = finishMessage(b, start)
		e.q.push(reply{kind: rBind, stmt: st, renameFrom: from, renameTo: to})
		if st != nil {
			e.bindPortal(portal, st, nil)
		}
		return nil
	})
}

// localBind binds a statement the gateway answers itself: the parameters
// are kept (copied: msg is only valid until the next read) for Execute.
func (e *engine) localBind(portal string, st *preparedStmt, rest []byte) error {
	paramFormats, params, resultFormats, ok := decodeBindRest(rest)
	if !ok {
		return malformed("Bind")
	}
	if pe := e.admitPortal(portal); pe != nil {
		e.failStatementLocked(pe, false)
		return nil
	}
	lp := &localPortal{answer: st.rw.local, params: params, paramFormats: paramFormats}
	if len(resultFormats) > 0 {
		lp.resultFormat = resultFormats[0]
	}
	e.bindPortal(portal, nil, lp)
	e.queueLocked(reply{kind: sBytes, data: msgBindComplete})
	return nil
}

// decodeBindRest decodes a Bind after its portal and statement names,
// copying the parameter values.
func decodeBindRest(b []byte) (paramFormats []int16, params [][]byte, resultFormats []int16, ok bool) {
	readInt16 := func() (int16, bool) {
		if len(b) < 2 {
			return 0, false
		}
		v := int16(binary.BigEndian.Uint16(b))
		b = b[2:]
		return v, true
	}
	readFormats := func() ([]int16, bool) {
		n, ok := readInt16()
		if !ok || n < 0 {
			return nil, false
		}
		var formats []int16
		for i := 0; i < int(n); i++ {
			f, ok := readInt16()
			if !ok {
				return nil, false
			}
			formats = append(formats, f)
		}
		return formats, true
	}
	if paramFormats, ok = readFormats(); !ok {
		return nil, nil, nil, false
	}
	n, ok := readInt16()
	if !ok || n < 0 {
		return nil, nil, nil, false
	}
	for i := 0; i < int(n); i++ {
		if len(b) < 4 {
			return nil, nil, nil, false
		}
		l := int32(binary.BigEndian.Uint32(b))
		b = b[4:]
		if l == -1 {
			params = append(params, nil)
			continue
		}
		if l < 0 {
			return nil, nil, nil, false // PostgreSQL: invalid Bind message
		}
		if int(l) > len(b) {
			return nil, nil, nil, false
		}
		params = append(params, append([]byte{}, b[:l]...))
		b = b[l:]
	}
	if resultFormats, ok = readFormats(); !ok {
		return nil, nil, nil, false
	}
	return paramFormats, params, resultFormats, len(b) == 0
}

// onDescribe handles Describe of a statement (mapped) or a portal.
func (e *engine) onDescribe(msg []byte) (clientStep, error) {
	if e.skipping() {
		return clientStep{}, nil
	}
	b := body(msg)
	if len(b) < 2 || (b[0] != 'S' && b[0] != 'P') {
		return clientStep{}, malformed("Describe")
	}
	name, _, ok := readCString(b[1:])
	if !ok {
		return clientStep{}, malformed("Describe")
	}
	if e.lostTx {
		e.lostTxDescribe(b[0], name)
		return clientStep{}, nil
	}
	if b[0] == 'S' && e.unsettled() {
		return clientStep{need: needReplies}, nil
	}
	if e.describeLocal(b[0], name) {
		return clientStep{}, nil
	}
	if e.us == nil {
		return attachFirst(false)
	}
	return e.build(false, func(us *upstreamState) *pgError {
		e.beginUnitLocked()
		e.inBatch = true
		if b[0] == 'P' {
			e.out = append(e.out, msg...)
			e.q.push(reply{kind: rDescribePortal, stmt: e.portals[name]})
		} else {
			upstream, st, from, to := e.stmtTargetLocked(name)
			d, start := beginMessage(e.out, 'D')
			d = append(d, 'S')
			d = appendCString(d, upstream)
			e.out = finishMessage(d, start)
			e.q.push(reply{kind: rDescribeStmt, stmt: st, renameFrom: from, renameTo: to})
		}
		return nil
	})
}

// describeLocal answers a Describe of a statement or portal the gateway
// answers itself, and reports whether it was one.
func (e *engine) describeLocal(kind byte, name string) bool {
	if kind == 'P' {
		if lp := e.localPortals[name]; lp != nil {
			e.queueLocked(reply{kind: sBytes, data: lp.answer.appendRowDescription(nil, lp.resultFormat)})
			return true
		}
	} else if st := e.lookupStmtLocked(name); st != nil && st.local {
		d := st.rw.local.appendParameterDescription(nil)
		d = st.rw.local.appendRowDescription(d, 0)
		e.queueLocked(reply{kind: sBytes, data: d})
		return true
	}
	return false
}

// onExecute forwards an Execute; the statement behind the portal tells
// whether it changes settings or the transaction.
func (e *engine) onExecute(msg []byte) (clientStep, error) {
	if e.skipping() {
		return clientStep{}, nil
	}
	portal, _, ok := readCString(body(msg))
	if !ok {
		return clientStep{}, malformed("Execute")
	}
	if e.lostTx {
		e.lostTxExecute(portal)
		return clientStep{}, nil
	}
	if lp := e.localPortals[portal]; lp != nil {
		if e.awaitStatus() {
			return clientStep{need: needReplies}, nil
		}
		status := e.statusAhead()
		if status == 'E' {
			e.failStatementLocked(inFailedTransaction(), false)
			return clientStep{}, nil
		}
		// Outside a transaction block the batch is one implicit
		// transaction, to its Sync: a transaction lock lasts that long.
		return clientStep{need: needLocal, local: &localCall{answer: lp.answer, params: lp.params,
			paramFormats: lp.paramFormats, resultFormat: lp.resultFormat, inTx: true}}, nil
	}
	st := e.portals[portal]
	dealloc := st != nil && st.rw != nil && st.rw.dealloc != nil
	discardAll := st.dropsStatements() && !dealloc
	if (dealloc || discardAll) && e.unsettled() {
		return clientStep{need: needReplies}, nil
	}
	if e.us == nil {
		return attachFirst(false)
	}
	return e.build(false, func(us *upstreamState) *pgError {
		e.beginUnitLocked()
		e.inBatch = true
		r := reply{kind: rExecute, stmt: st}
		e.occNoteExecute(st)
		if st != nil {
			// A timeout SET applies to what the pipeline runs after it.
			e.timeoutChangeLocked(st.rw)
			f := unitFlagsFor(st.kind)
			e.unitFlags |= f
			if tx := f & (unitBegin | unitCommit | unitRollback); tx != 0 {
				e.unitLastTx = tx
			}
			e.unitText = st.query
		}
		if st != nil && st.rw != nil && st.rw.hideRows {
			if e.portalRan[portal] {
				return &pgError{Severity: severityError, Code: pgerrcode.ObjectNotInPrerequisiteState,
					Message: fmt.Sprintf("portal %q cannot be run", portal)}
			}
			if e.portalRan == nil {
				e.portalRan = map[string]bool{}
			}
			e.portalRan[portal] = true
		}
		if dealloc {
			// DEALLOCATE takes effect as it runs, for the messages
			// pipelined behind it too; undone if the server skips it.
			if pe := e.deallocateMissing(st.rw.dealloc); pe != nil {
				return pe
			}
			r.dropped = e.deallocateLocked(st.rw.dealloc)
			e.pushSpeculative(r)
		} else if discardAll {
			// Likewise DISCARD ALL's dropping of every statement (its
			// settings are reset when it completes).
			r.dropped, r.droppedUpstream = e.dropAllStmtsLocked()
			e.pushSpeculative(r)
		} else {
			e.q.push(r)
		}
		e.out = append(e.out, msg...)
		return nil
	})
}

// onClose: closing a statement is answered by the gateway (the upstream
// keeps it for others; the LRU closes it in time); closing a portal goes
// upstream when one is attached.
func (e *engine) onClose(msg []byte) (clientStep, error) {
	if e.skipping() {
		return clientStep{}, nil
	}
	b := body(msg)
	if len(b) < 2 || (b[0] != 'S' && b[0] != 'P') {
		return clientStep{}, malformed("Close")
	}
	name, _, ok := readCString(b[1:])
	if !ok {
		return clientStep{}, malformed("Close")
	}
	if b[0] == 'S' {
		// The reply entry keeps the statement, to put it back if the
		// server skips this Close (an error ahead of it in the batch).
		closed := e.lookupStmtLocked(name)
		if name == "" {
			e.unnamed = nil
		} else {
			e.stmts.del(name)
			if closed != nil && e.ownNames() {
				e.closeLaterLocked(name)
			}
		}
		if e.q.len() > 0 {
			e.markSpeculative()
		}
		e.queueLocked(reply{kind: sCloseComplete, stmt: closed, closed: true})
		return clientStep{}, nil
	}
	if _, local := e.localPortals[name]; local || e.us == nil || e.lostTx {
		// A portal the gateway answers, or no upstream: no upstream
		// portal can exist (portals end with their transaction), and
		// closing a missing portal is not an error.
		delete(e.portals, name)
		delete(e.localPortals, name)
		delete(e.portalRan, name)
		delete(e.portalUnit, name)
		e.queueLocked(reply{kind: sCloseComplete})
		return clientStep{}, nil
	}
	e.beginUnitLocked()
	e.inBatch = true
	delete(e.portals, name)
	delete(e.portalRan, name)
	delete(e.portalUnit, name)
	e.q.push(reply{kind: rClosePortal})
	e.out = append(e.out, msg...)
	return clientStep{}, nil
}

// onSync ends an extended-protocol batch.
func (e *engine) onSync() {
	if e.skipUntilSync {
		e.skipUntilSync = false
		e.unitOpen = false
		e.inBatch = false
		e.txStatus = e.skipStatus
		e.queueLocked(reply{kind: sBytes, rfq: true})
		return
	}
	// serverSkipping: the upstream ignores messages until this Sync; it
	// goes upstream like any other.
	e.serverSkipping = false
	if e.lostTx {
		e.host.writeClientLocked(readyForQuery(e.txStatus))
		return
	}
	if e.us == nil {
		// Nothing of this batch went upstream (only Close, or what the
		// gateway answers itself).
		e.unitOpen = false
		if e.q.len() == 0 && e.txStatus == 'I' {
			// An implicit transaction ends here.
			e.endPortals(e.unitsSent + 1)
			e.host.releaseXactLocksLocked()
		}
		e.queueLocked(reply{kind: sBytes, rfq: true})
		return
	}
	e.beginUnitLocked()
	e.pushUnitEnd(reply{kind: rSync, unitStart: e.unitStart, unitFlags: e.unitFlags, began: e.unitBegan, text: e.unitText})
	e.unitOpen = false
	e.inBatch = false
	e.out = append(e.out, msgSync...)
}

// onFlush forwards a Flush when the upstream owes replies.
func (e *engine) onFlush(msg []byte) {
	if e.us == nil || e.q.len() == 0 || e.skipUntilSync {
		return
	}
	e.occTaint()
	e.out = append(e.out, msg...)
}

// onFunctionCall forwards the legacy FunctionCall; its replies end with
// ReadyForQuery like a simple query.
func (e *engine) onFunctionCall(msg []byte) (clientStep, error) {
	if e.skipping() {
		return clientStep{}, nil
	}
	if e.lostTx {
		return e.lostTxQuery("")
	}
	if e.us == nil {
		return attachFirst(true)
	}
	return e.build(true, func(us *upstreamState) *pgError {
		e.occTaint()
		e.beginUnitLocked()
		e.pushUnitEnd(reply{kind: rQuery, query: &queryInfo{}, unitStart: e.unitStart, unitFlags: e.unitFlags, began: e.unitBegan})
		e.unitOpen = false
		e.out = append(e.out, msg...)
		return nil
	})
}

// onCopyFromClient forwards COPY data while the upstream is in COPY FROM
// STDIN; otherwise such messages are dropped, as PostgreSQL drops them.
func (e *engine) onCopyFromClient(msg []byte) {
	// pgx and others stream COPY data right after the Query, before the
	// CopyInResponse arrives: forward while the upstream owes replies.
	if e.us == nil || (!e.copyIn && e.q.len() == 0) {
		return
	}
	e.occTaint()
	e.out = append(e.out, msg...)
}

// dropsStatements reports whether executing st removes prepared statements
// (DEALLOCATE, DISCARD ALL): the engine applies that when it sends the
// Execute, so the messages pipelined behind it see it.
func (st *preparedStmt) dropsStatements() bool {
	if st == nil {
		return false
	}
	return st.rw != nil && st.rw.dealloc != nil || st.kind == sqllex.Discard && isDiscardAll(st.query)
}

// isDiscardAll recognises DISCARD ALL (any case and spacing, an optional
// semicolon).
func isDiscardAll(text string) bool {
	f := strings.Fields(strings.TrimSuffix(strings.TrimSpace(text), ";"))
	return len(f) == 2 && strings.EqualFold(f[0], "discard") && strings.EqualFold(f[1], "all")
}
