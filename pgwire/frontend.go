package pgwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dsqlgate/dsqlgate/authbridge"
	"github.com/dsqlgate/dsqlgate/pgwire/sqllex"
)

// This file handles the client's messages in the client goroutine: each
// handler queues the replies it expects under mu, then writes upstream.

// startFailed reports a failure to get an upstream for a unit of work: the
// client gets the error; in an extended-protocol batch the rest of the batch
// is dropped until Sync, as after any error.
func (s *session) startFailed(err error, simple bool) error {
	e := errorForClient(err)
	if e.Severity == severityFatal {
		s.fatal(e)
		return e
	}
	s.log.Warn("no upstream for client work", errField(err))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answerErrorLocked(e, simple)
	s.flushClientLocked()
	return nil
}

// answerErrorLocked answers a client message with an error the gateway
// raises without the upstream, in order behind the replies still owed: a
// simple Query's ends with ReadyForQuery; in an extended-protocol batch the
// rest of the batch is dropped until Sync.
func (s *session) answerErrorLocked(e *pgError, simple bool) {
	if !simple {
		s.skipUntilSync = true
		s.skipStatus = s.txStatus
	}
	s.queueLocked(reply{kind: sBytes, data: appendErrorResponse(nil, e), rfq: simple})
}

// onQuery handles a simple Query.
func (s *session) onQuery(msg []byte) error {
	if s.skipping() {
		return nil // the server, too, ignores a Query until the batch's Sync
	}
	text, _, ok := readCString(body(msg))
	if !ok {
		return s.malformed("Query")
	}
	qi, flags, sent := s.describeQuery(text)
	if e := s.admitSettings(qi.stmts...); e != nil {
		return s.failStatement(e, true)
	}
	if s.inLostTx() {
		return s.lostTxQuery(msg, text, qi)
	}
	if len(qi.stmts) == 1 && qi.stmts[0].rw != nil && qi.stmts[0].rw.local != nil && s.clientTxStatus() != 'E' {
		return s.localQuery(qi.stmts[0].rw.local)
	}
	return s.toUpstream(true, func(us *upstreamState) *pgError {
		s.beginUnitLocked()
		s.queryTimeoutLocked(qi)
		s.q.push(reply{kind: rQuery, query: qi, unitStart: s.unitStart, unitFlags: s.unitFlags | flags, began: s.unitBegan, text: text})
		s.unitOpen = false
		// A simple Query destroys the unnamed statement, the client's and
		// the upstream's.
		us.unnamedOwner = nil
		s.unnamed = nil
		if sent == text {
			s.out = append(s.out, msg...)
		} else {
			q, start := beginMessage(s.out, 'Q')
			q = appendCString(q, sent)
			s.out = finishMessage(q, start)
		}
		return nil
	})
}

// admitSettings returns the error for SETs that would take the client past
// its bounds on settings, or nil.
func (s *session) admitSettings(stmts ...stmtInfo) *pgError {
	if !slices.ContainsFunc(stmts, func(st stmtInfo) bool { return st.set != nil }) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range stmts {
		if e := s.gucs.admitSetting(st.set, s.limits().MaxClientSettings); e != nil {
			return e
		}
	}
	return nil
}

func (s *session) clientTxStatus() byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.txStatus
}

// describeQuery splits a simple query into statements, notes what the
// session-state engine needs to know of each, and applies the
// compatibility layer's rewrites: sent is the text to send upstream.
func (s *session) describeQuery(text string) (qi *queryInfo, flags uint8, sent string) {
	stmts := sqllex.SplitStatements(text)
	qi = &queryInfo{stmts: make([]stmtInfo, len(stmts))}
	var b strings.Builder
	last := 0
	for i, st := range stmts {
		k := sqllex.Classify(st.Text)
		info := &qi.stmts[i]
		info.kind = k
		flags |= unitFlagsFor(k)
		info.rw = s.compatRewrite(st.Text, k, nil)
		if info.rw != nil && info.rw.text != "" && (len(stmts) > 1 || info.rw.local == nil) {
			b.WriteString(text[last:st.Start])
			b.WriteString(info.rw.text)
			last = st.End
			continue
		}
		if (k == sqllex.Set || k == sqllex.Reset) && info.rw == nil {
			if set, ok := sqllex.ParseSet(st.Text); ok {
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

// localQuery answers a simple Query that is one statement the gateway
// answers itself (an advisory-lock call, an emulated setting's value).
func (s *session) localQuery(la localAnswer) error {
	s.flushUpstream() // a lock wait must not hold back work already sent
	inTx := s.clientTxStatus() == 'T'
	out, perr := la.execute(s, nil, nil, 0, inTx)
	if perr != nil {
		return s.failStatement(perr, true)
	}
	full := la.appendRowDescription(nil, 0)
	full = append(full, out...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queueLocked(reply{kind: sBytes, data: full, rfq: true})
	return nil
}

// failStatement reports an error the gateway raises for a client
// statement. Inside a transaction on an attached upstream it makes the
// upstream fail a statement too, so the transaction is failed there as
// it is for the client; elsewhere the gateway answers alone.
func (s *session) failStatement(e *pgError, simple bool) error {
	s.sendLocked(func() *authbridge.ServerConn {
		// Outside a transaction and with nothing of the batch sent
		// upstream, the gateway answers alone; otherwise the upstream must
		// fail too, or it would commit what the batch sent before the
		// error.
		// (s.txStatus is what the client last saw: with replies still
		// owed it may be about to change, so only the upstream can tell.)
		if s.sc == nil || (s.txStatus == 'I' && !s.inBatch && s.q.len() == 0) {
			s.answerErrorLocked(e, simple)
			return nil
		}
		s.beginUnitLocked()
		if simple {
			s.q.push(reply{kind: rQuery, query: &queryInfo{stmts: []stmtInfo{{rw: &rewrite{err: e}}}}, unitStart: s.unitStart, unitFlags: s.unitFlags})
			s.unitOpen = false
			q, start := beginMessage(s.out, 'Q')
			q = appendCString(q, failingSQL)
			s.out = finishMessage(q, start)
		} else {
			s.inBatch = true
			s.q.push(reply{kind: iParse, err: e})
			p, start := beginMessage(s.out, 'P')
			p = appendCString(p, "dsqlgate_refused")
			p = appendCString(p, failingSQL)
			p = appendInt16(p, 0)
			s.out = finishMessage(p, start)
		}
		return s.sc
	})
	return nil
}

// sendLocked runs fn under mu; fn queues the replies it expects, appends
// the messages to s.out and returns the upstream to write them to (nil:
// nothing goes upstream). They are written after mu is released.
func (s *session) sendLocked(fn func() *authbridge.ServerConn) {
	sc := func() *authbridge.ServerConn {
		s.mu.Lock()
		defer s.mu.Unlock()
		sc := fn()
		if sc != nil {
			s.unflushed = true
		}
		return sc
	}()
	if sc != nil {
		s.sendUpstream(sc)
	}
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

// onParse handles a Parse: named statements get a gateway-owned upstream
// name and are parsed upstream only when that upstream lacks them;
// statements the gateway answers itself never go upstream.
func (s *session) onParse(msg []byte) error {
	if s.skipping() {
		return nil
	}
	p, ok := decodeParse(msg)
	if !ok {
		return s.malformed("Parse")
	}
	kind := sqllex.Classify(p.query)
	st := &preparedStmt{name: p.name, query: p.query, sent: p.query, paramOIDs: p.oids, kind: kind}
	st.rw = s.compatRewrite(p.query, kind, p.oids)
	switch {
	case st.rw != nil && st.rw.local != nil:
		st.local = true
	case st.rw != nil && st.rw.text != "":
		st.sent = st.rw.text
	case kind == sqllex.Set || kind == sqllex.Reset:
		if set, ok := sqllex.ParseSet(p.query); ok {
			st.set = &set
		}
	}
	if e := s.admitSettings(stmtInfo{set: st.set}); e != nil {
		return s.failStatement(e, false)
	}
	if s.inLostTx() {
		return s.lostTxParse(st)
	}
	if st.local {
		return s.localParse(st)
	}
	return s.toUpstream(false, func(us *upstreamState) *pgError {
		return s.parseLocked(us, msg, p, st)
	})
}

// parseLocked builds the upstream side of a client Parse.
func (s *session) parseLocked(us *upstreamState, msg []byte, p parseMessage, st *preparedStmt) *pgError {
	s.beginUnitLocked()
	s.inBatch = true
	switch existing := s.stmts.get(p.name); {
	case p.name == "":
		prev := s.unnamed
		s.unnamedGen++
		st.gen = s.unnamedGen
		s.unnamed = st
		us.unnamedOwner, us.unnamedGen = s, st.gen
		s.q.push(reply{kind: rParse, stmt: st, prev: prev})
		if st.sent == p.query {
			s.out = append(s.out, msg...)
		} else {
			s.out = appendParse(s.out, "", st)
		}
	case existing != nil:
		// PostgreSQL refuses a second Parse of a name (in a failed
		// transaction it says so first). The gateway says it, and the
		// upstream fails a statement of its own (failStatement): the
		// client's text never goes upstream under the existing
		// statement's shared name, which the upstream might not have
		// (the name would then hold this text for everyone using it).
		if s.txStatus == 'E' && !endsTx(st.kind) {
			return inFailedTransaction()
		}
		return duplicateStatement(p.name)
	default:
		if s.txStatus == 'E' && !endsTx(st.kind) {
			// As PostgreSQL, before anything else: in a failed transaction
			// only COMMIT and ROLLBACK may be prepared.
			return inFailedTransaction()
		}
		if e := s.stmts.admit(st, s.limits().MaxClientStatements); e != nil {
			return e
		}
		st.upstream = s.upstreamNameLocked(st.sent, p.oids)
		s.stmts.put(st)
		if us.hasStmt(st.upstream) {
			s.queueLocked(reply{kind: sParseComplete, stmt: st})
		} else {
			s.evictLocked(us.addStmt(st.upstream, s.maxPrepared()))
			s.out = appendParse(s.out, st.upstream, st)
			s.q.push(reply{kind: rParse, stmt: st})
		}
	}
	return nil
}

func inFailedTransaction() *pgError {
	return &pgError{Severity: severityError, Code: codeInFailedTransaction, Message: inFailedTxMessage}
}

func duplicateStatement(name string) *pgError {
	return &pgError{Severity: severityError, Code: "42P05", Message: fmt.Sprintf("prepared statement %q already exists", name)}
}

// localParse records a statement the gateway answers itself.
func (s *session) localParse(st *preparedStmt) error {
	if e := s.localParseLocked(st); e != nil {
		return s.failStatement(e, false)
	}
	return nil
}

func (s *session) localParseLocked(st *preparedStmt) *pgError {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case st.name == "":
		s.unnamedGen++
		st.gen = s.unnamedGen
		s.unnamed = st
	case s.stmts.get(st.name) != nil:
		return duplicateStatement(st.name)
	default:
		if e := s.stmts.admit(st, s.limits().MaxClientStatements); e != nil {
			return e
		}
		s.stmts.put(st)
	}
	s.queueLocked(reply{kind: sParseComplete})
	return nil
}

func (s *session) maxPrepared() int { return s.pool.Settings().MaxPreparedStatements }

// evictLocked closes upstream statements pushed out of the upstream's LRU.
func (s *session) evictLocked(names []string) {
	for _, n := range names {
		s.out = appendClose(s.out, 'S', n)
		s.q.push(reply{kind: iClose})
	}
}

// ensureStmtLocked injects a Parse of st before the message being built
// when the attached upstream lacks it.
func (s *session) ensureStmtLocked(us *upstreamState, st *preparedStmt) {
	if st.name == "" {
		if us.unnamedOwner == s && us.unnamedGen == st.gen {
			return
		}
		s.out = appendParse(s.out, "", st)
		s.q.push(reply{kind: iParse, stmt: st})
		us.unnamedOwner, us.unnamedGen = s, st.gen
		return
	}
	if us.hasStmt(st.upstream) {
		return
	}
	s.evictLocked(us.addStmt(st.upstream, s.maxPrepared()))
	s.out = appendParse(s.out, st.upstream, st)
	s.q.push(reply{kind: iParse, stmt: st})
}

// lookupStmt finds the client's statement by name (nil if none).
func (s *session) lookupStmt(name string) *preparedStmt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookupStmtLocked(name)
}

// localPortal returns the portal the gateway answers by that name (nil if
// none) and the client's transaction status.
func (s *session) localPortal(name string) (*localPortal, byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.localPortals[name], s.txStatus
}

// lookupStmtLocked finds the client's statement by name (nil if none).
func (s *session) lookupStmtLocked(name string) *preparedStmt {
	if name == "" {
		return s.unnamed
	}
	return s.stmts.get(name)
}

// stmtTarget returns the upstream name for a client's statement reference,
// injecting a Parse when needed, and the error rename for a missing one.
func (s *session) stmtTargetLocked(name string) (upstream string, st *preparedStmt, renameFrom, renameTo string) {
	st = s.lookupStmtLocked(name)
	if st == nil {
		// Let the upstream report the missing statement (with a real
		// error's transaction semantics), then show the client's name.
		return missingStatementName, nil, missingStatementName, name
	}
	s.ensureStmtLocked(s.us, st)
	return st.upstream, st, "", ""
}

// onBind handles a Bind: the statement name is mapped to the upstream's.
func (s *session) onBind(msg []byte) error {
	if s.skipping() {
		return nil
	}
	portal, rest, ok := readCString(body(msg))
	if !ok {
		return s.malformed("Bind")
	}
	stmtName, params, ok := readCString(rest)
	if !ok {
		return s.malformed("Bind")
	}
	if s.inLostTx() {
		return s.lostTxBind(portal, stmtName)
	}
	if local := s.lookupStmt(stmtName); local != nil && local.local {
		return s.localBind(portal, local, params)
	}
	return s.toUpstream(false, func(us *upstreamState) *pgError {
		s.beginUnitLocked()
		s.inBatch = true
		delete(s.localPortals, portal)
		upstream, st, from, to := s.stmtTargetLocked(stmtName)
		b, start := beginMessage(s.out, 'B')
		b = appendCString(b, portal)
		b = appendCString(b, upstream)
		b = append(b, params...)
		s.out = finishMessage(b, start)
		s.q.push(reply{kind: rBind, stmt: st, renameFrom: from, renameTo: to})
		if st != nil {
			if s.portals == nil {
				s.portals = map[string]*preparedStmt{}
			}
			s.portals[portal] = st
		}
		return nil
	})
}

// localBind binds a statement the gateway answers itself: the parameters
// are kept (copied: msg is only valid until the next read) for Execute.
func (s *session) localBind(portal string, st *preparedStmt, rest []byte) error {
	paramFormats, params, resultFormats, ok := decodeBindRest(rest)
	if !ok {
		return s.malformed("Bind")
	}
	lp := &localPortal{answer: st.rw.local, params: params, paramFormats: paramFormats}
	if len(resultFormats) > 0 {
		lp.resultFormat = resultFormats[0]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.localPortals == nil {
		s.localPortals = map[string]*localPortal{}
	}
	s.localPortals[portal] = lp
	delete(s.portals, portal)
	s.queueLocked(reply{kind: sBytes, data: msgBindComplete})
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
func (s *session) onDescribe(msg []byte) error {
	if s.skipping() {
		return nil
	}
	b := body(msg)
	if len(b) < 2 || (b[0] != 'S' && b[0] != 'P') {
		return s.malformed("Describe")
	}
	name, _, ok := readCString(b[1:])
	if !ok {
		return s.malformed("Describe")
	}
	if s.inLostTx() {
		return s.lostTxDescribe(b[0], name)
	}
	if s.describeLocal(b[0], name) {
		return nil
	}
	return s.toUpstream(false, func(us *upstreamState) *pgError {
		s.beginUnitLocked()
		s.inBatch = true
		if b[0] == 'P' {
			s.out = append(s.out, msg...)
			s.q.push(reply{kind: rDescribePortal, stmt: s.portals[name]})
		} else {
			upstream, st, from, to := s.stmtTargetLocked(name)
			d, start := beginMessage(s.out, 'D')
			d = append(d, 'S')
			d = appendCString(d, upstream)
			s.out = finishMessage(d, start)
			s.q.push(reply{kind: rDescribeStmt, stmt: st, renameFrom: from, renameTo: to})
		}
		return nil
	})
}

// describeLocal answers a Describe of a statement or portal the gateway
// answers itself, and reports whether it was one.
func (s *session) describeLocal(kind byte, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if kind == 'P' {
		if lp := s.localPortals[name]; lp != nil {
			s.queueLocked(reply{kind: sBytes, data: lp.answer.appendRowDescription(nil, lp.resultFormat)})
			return true
		}
	} else if st := s.lookupStmtLocked(name); st != nil && st.local {
		d := st.rw.local.appendParameterDescription(nil)
		d = st.rw.local.appendRowDescription(d, 0)
		s.queueLocked(reply{kind: sBytes, data: d})
		return true
	}
	return false
}

// onExecute forwards an Execute; the statement behind the portal tells
// whether it changes settings or the transaction.
func (s *session) onExecute(msg []byte) error {
	if s.skipping() {
		return nil
	}
	portal, _, ok := readCString(body(msg))
	if !ok {
		return s.malformed("Execute")
	}
	if s.inLostTx() {
		return s.lostTxExecute(portal)
	}
	if lp, status := s.localPortal(portal); lp != nil {
		if status == 'E' {
			return s.failStatement(&pgError{Severity: severityError, Code: codeInFailedTransaction, Message: inFailedTxMessage}, false)
		}
		s.flushUpstream() // a lock wait must not hold back work already sent
		out, perr := lp.answer.execute(s, lp.params, lp.paramFormats, lp.resultFormat, status == 'T')
		if perr != nil {
			return s.failStatement(perr, false)
		}
		s.sendLocked(func() *authbridge.ServerConn {
			s.queueLocked(reply{kind: sBytes, data: out})
			return nil
		})
		return nil
	}
	return s.toUpstream(false, func(us *upstreamState) *pgError {
		s.beginUnitLocked()
		s.inBatch = true
		st := s.portals[portal]
		if st != nil {
			s.unitFlags |= unitFlagsFor(st.kind)
			s.unitText = st.query
		}
		s.q.push(reply{kind: rExecute, stmt: st})
		s.out = append(s.out, msg...)
		return nil
	})
}

// onClose: closing a statement is answered by the gateway (the upstream
// keeps it for others; the LRU closes it in time); closing a portal goes
// upstream when one is attached.
func (s *session) onClose(msg []byte) error {
	if s.skipping() {
		return nil
	}
	b := body(msg)
	if len(b) < 2 || (b[0] != 'S' && b[0] != 'P') {
		return s.malformed("Close")
	}
	name, _, ok := readCString(b[1:])
	if !ok {
		return s.malformed("Close")
	}
	s.sendLocked(func() *authbridge.ServerConn {
		if b[0] == 'S' {
			// The reply entry keeps the statement, to put it back if the
			// server skips this Close (an error ahead of it in the batch).
			closed := s.lookupStmtLocked(name)
			if name == "" {
				s.unnamed = nil
			} else {
				s.stmts.del(name)
			}
			s.queueLocked(reply{kind: sCloseComplete, stmt: closed, closed: true})
			return nil
		}
		if _, local := s.localPortals[name]; local || s.sc == nil || s.lostTx {
			// A portal the gateway answers, or no upstream: no upstream
			// portal can exist (portals end with their transaction), and
			// closing a missing portal is not an error.
			delete(s.portals, name)
			delete(s.localPortals, name)
			s.queueLocked(reply{kind: sCloseComplete})
			return nil
		}
		s.beginUnitLocked()
		s.inBatch = true
		delete(s.portals, name)
		s.q.push(reply{kind: rClosePortal})
		s.out = append(s.out, msg...)
		return s.sc
	})
	return nil
}

// onSync ends an extended-protocol batch.
func (s *session) onSync() error {
	lostTx := false
	s.sendLocked(func() *authbridge.ServerConn {
		if s.skipUntilSync {
			s.skipUntilSync = false
			s.unitOpen = false
			s.inBatch = false
			s.txStatus = s.skipStatus
			s.queueLocked(reply{kind: sBytes, rfq: true})
			return nil
		}
		// serverSkipping: the upstream ignores messages until this Sync;
		// it goes upstream like any other.
		s.serverSkipping = false
		if s.lostTx {
			lostTx = true
			return nil
		}
		if s.sc == nil {
			// Nothing of this batch went upstream (only Close, or nothing).
			s.unitOpen = false
			s.queueLocked(reply{kind: sBytes, rfq: true})
			return nil
		}
		s.beginUnitLocked()
		s.q.push(reply{kind: rSync, unitStart: s.unitStart, unitFlags: s.unitFlags, began: s.unitBegan, text: s.unitText})
		s.unitOpen = false
		s.inBatch = false
		s.out = append(s.out, msgSync...)
		return s.sc
	})
	if lostTx {
		return s.lostTxSync()
	}
	return nil
}

// onFlush forwards a Flush when the upstream owes replies.
func (s *session) onFlush(msg []byte) error {
	s.sendLocked(func() *authbridge.ServerConn {
		if s.sc == nil || s.q.len() == 0 || s.skipUntilSync {
			return nil
		}
		s.out = append(s.out, msg...)
		return s.sc
	})
	return nil
}

// onFunctionCall forwards the legacy FunctionCall; its replies end with
// ReadyForQuery like a simple query.
func (s *session) onFunctionCall(msg []byte) error {
	if s.skipping() {
		return nil
	}
	if s.inLostTx() {
		return s.lostTxQuery(msg, "", &queryInfo{})
	}
	return s.toUpstream(true, func(us *upstreamState) *pgError {
		s.beginUnitLocked()
		s.q.push(reply{kind: rQuery, query: &queryInfo{}, unitStart: s.unitStart, unitFlags: s.unitFlags, began: s.unitBegan})
		s.unitOpen = false
		s.out = append(s.out, msg...)
		return nil
	})
}

// onCopyFromClient forwards COPY data while the upstream is in COPY FROM
// STDIN; otherwise such messages are dropped, as PostgreSQL drops them.
func (s *session) onCopyFromClient(msg []byte) error {
	s.sendLocked(func() *authbridge.ServerConn {
		// pgx and others stream COPY data right after the Query, before
		// the CopyInResponse arrives: forward while the upstream owes
		// replies.
		if s.sc == nil || (!s.copyIn && s.q.len() == 0) {
			return nil
		}
		s.out = append(s.out, msg...)
		return s.sc
	})
	return nil
}

// skipping reports whether the client's batch is being dropped until Sync:
// after an error the gateway raised, or one the upstream raised (which
// then ignores everything up to the Sync).
func (s *session) skipping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skipUntilSync || s.serverSkipping
}

var _ = errors.New
var _ *authbridge.ServerConn
