package pgwire

import (
	"encoding/binary"
	"errors"
	"fmt"
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
	s.writeClientLocked(appendErrorResponse(nil, e))
	if simple {
		s.writeClientLocked(readyForQuery(s.txStatus))
	} else {
		s.skipUntilSync = true
		s.skipStatus = s.txStatus
	}
	s.flushClientLocked()
	return nil
}

// onQuery handles a simple Query.
func (s *session) onQuery(msg []byte) error {
	text, _, ok := readCString(body(msg))
	if !ok {
		return s.malformed("Query")
	}
	qi, flags, sent := s.describeQuery(text)
	if s.inLostTx() {
		return s.lostTxQuery(msg, text, qi)
	}
	if len(qi.stmts) == 1 && qi.stmts[0].rw != nil && qi.stmts[0].rw.local != nil && s.clientTxStatus() != 'E' {
		return s.localQuery(qi.stmts[0].rw.local)
	}
	sc, err := s.attached()
	if err != nil {
		return s.startFailed(err, true)
	}
	if !s.lockAttached(sc) {
		return s.onQuery(msg)
	}
	s.beginUnitLocked()
	s.q.push(reply{kind: rQuery, query: qi, unitStart: s.unitStart, unitFlags: s.unitFlags | flags, began: s.unitBegan, text: text})
	s.unitOpen = false
	s.us.unnamedOwner = nil // a simple Query destroys the unnamed statement
	s.unflushed = true
	s.mu.Unlock()
	if sent == text {
		s.out = append(s.out, msg...)
	} else {
		q, start := beginMessage(s.out, 'Q')
		q = appendCString(q, sent)
		s.out = finishMessage(q, start)
	}
	s.sendUpstream(sc)
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
	full = append(full, readyForQuery(s.txStatus)...)
	s.queueLocked(reply{kind: sBytes, data: full})
	return nil
}

// failStatement reports an error the gateway raises for a client
// statement. Inside a transaction on an attached upstream it makes the
// upstream fail a statement too, so the transaction is failed there as
// it is for the client; elsewhere the gateway answers alone.
func (s *session) failStatement(e *pgError, simple bool) error {
	s.mu.Lock()
	sc := s.sc
	if sc == nil || s.txStatus == 'I' {
		s.writeClientLocked(appendErrorResponse(nil, e))
		if simple {
			s.writeClientLocked(readyForQuery(s.txStatus))
		} else {
			s.skipUntilSync = true
			s.skipStatus = s.txStatus
		}
		s.mu.Unlock()
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
	s.unflushed = true
	s.mu.Unlock()
	s.sendUpstream(sc)
	return nil
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
	if s.inLostTx() {
		return s.lostTxParse(st)
	}
	if st.local {
		return s.localParse(st)
	}
	sc, err := s.attached()
	if err != nil {
		return s.startFailed(err, false)
	}
	if !s.lockAttached(sc) {
		return s.onParse(msg)
	}
	s.beginUnitLocked()
	s.inBatch = true
	us := s.us
	switch existing := s.stmts[p.name]; {
	case p.name == "":
		s.unnamedGen++
		st.gen = s.unnamedGen
		s.unnamed = st
		us.unnamedOwner, us.unnamedGen = s, st.gen
		s.q.push(reply{kind: rParse, stmt: st})
		if st.sent == p.query {
			s.out = append(s.out, msg...)
		} else {
			s.out = appendParse(s.out, "", st)
		}
	case existing != nil:
		// PostgreSQL refuses a second Parse of a name; let the upstream
		// say so, about the existing statement, with its own semantics.
		if existing.local {
			s.mu.Unlock()
			return s.failStatement(duplicateStatement(p.name), false)
		}
		s.ensureStmtLocked(us, existing)
		s.out = appendParse(s.out, existing.upstream, st)
		s.q.push(reply{kind: rParseDup, renameFrom: existing.upstream, renameTo: p.name})
	default:
		st.upstream = upstreamName(st.sent, p.oids, s.gucs.desired["search_path"])
		s.stmts[p.name] = st
		if us.hasStmt(st.upstream) {
			s.queueLocked(reply{kind: sParseComplete})
		} else {
			s.evictLocked(us.addStmt(st.upstream, s.maxPrepared()))
			s.out = appendParse(s.out, st.upstream, st)
			s.q.push(reply{kind: rParse, stmt: st})
		}
	}
	s.unflushed = true
	s.mu.Unlock()
	s.sendUpstream(sc)
	return nil
}

func duplicateStatement(name string) *pgError {
	return &pgError{Severity: severityError, Code: "42P05", Message: fmt.Sprintf("prepared statement %q already exists", name)}
}

// localParse records a statement the gateway answers itself.
func (s *session) localParse(st *preparedStmt) error {
	s.mu.Lock()
	if st.name == "" {
		s.unnamedGen++
		st.gen = s.unnamedGen
		s.unnamed = st
	} else if s.stmts[st.name] != nil {
		s.mu.Unlock()
		return s.failStatement(duplicateStatement(st.name), false)
	} else {
		s.stmts[st.name] = st
	}
	s.queueLocked(reply{kind: sParseComplete})
	s.mu.Unlock()
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

// lookupStmtLocked finds the client's statement by name (nil if none).
func (s *session) lookupStmtLocked(name string) *preparedStmt {
	if name == "" {
		return s.unnamed
	}
	return s.stmts[name]
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
	s.mu.Lock()
	local := s.lookupStmtLocked(stmtName)
	s.mu.Unlock()
	if local != nil && local.local {
		return s.localBind(portal, local, params)
	}
	sc, err := s.attached()
	if err != nil {
		return s.startFailed(err, false)
	}
	if !s.lockAttached(sc) {
		return s.onBind(msg)
	}
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
	s.unflushed = true
	s.mu.Unlock()
	s.sendUpstream(sc)
	return nil
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
	s.mu.Lock()
	if b[0] == 'P' {
		if lp := s.localPortals[name]; lp != nil {
			s.queueLocked(reply{kind: sBytes, data: lp.answer.appendRowDescription(nil, lp.resultFormat)})
			s.mu.Unlock()
			return nil
		}
	} else if st := s.lookupStmtLocked(name); st != nil && st.local {
		d := st.rw.local.appendParameterDescription(nil)
		d = st.rw.local.appendRowDescription(d, 0)
		s.queueLocked(reply{kind: sBytes, data: d})
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	sc, err := s.attached()
	if err != nil {
		return s.startFailed(err, false)
	}
	if !s.lockAttached(sc) {
		return s.onDescribe(msg)
	}
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
	s.unflushed = true
	s.mu.Unlock()
	s.sendUpstream(sc)
	return nil
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
	s.mu.Lock()
	lp := s.localPortals[portal]
	status := s.txStatus
	s.mu.Unlock()
	if lp != nil {
		if status == 'E' {
			return s.failStatement(&pgError{Severity: severityError, Code: codeInFailedTransaction, Message: inFailedTxMessage}, false)
		}
		s.flushUpstream() // a lock wait must not hold back work already sent
		out, perr := lp.answer.execute(s, lp.params, lp.paramFormats, lp.resultFormat, status == 'T')
		if perr != nil {
			return s.failStatement(perr, false)
		}
		s.mu.Lock()
		s.queueLocked(reply{kind: sBytes, data: out})
		s.mu.Unlock()
		return nil
	}
	sc, err := s.attached()
	if err != nil {
		return s.startFailed(err, false)
	}
	if !s.lockAttached(sc) {
		return s.onExecute(msg)
	}
	s.beginUnitLocked()
	s.inBatch = true
	st := s.portals[portal]
	if st != nil {
		s.unitFlags |= unitFlagsFor(st.kind)
		s.unitText = st.query
	}
	s.q.push(reply{kind: rExecute, stmt: st})
	s.unflushed = true
	s.mu.Unlock()
	s.out = append(s.out, msg...)
	s.sendUpstream(sc)
	return nil
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if b[0] == 'S' {
		if name == "" {
			s.unnamed = nil
		} else {
			delete(s.stmts, name)
		}
		s.queueLocked(reply{kind: sCloseComplete})
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
	sc := s.sc
	s.beginUnitLocked()
	s.inBatch = true
	delete(s.portals, name)
	s.q.push(reply{kind: rClosePortal})
	s.unflushed = true
	s.mu.Unlock()
	s.out = append(s.out, msg...)
	s.sendUpstream(sc)
	s.mu.Lock()
	return nil
}

// onSync ends an extended-protocol batch.
func (s *session) onSync() error {
	s.mu.Lock()
	if s.skipUntilSync {
		s.skipUntilSync = false
		s.unitOpen = false
		s.inBatch = false
		s.txStatus = s.skipStatus
		s.writeClientLocked(readyForQuery(s.skipStatus))
		s.mu.Unlock()
		return nil
	}
	if s.lostTx {
		s.mu.Unlock()
		return s.lostTxSync()
	}
	if s.sc == nil {
		// Nothing of this batch went upstream (only Close, or nothing).
		s.unitOpen = false
		s.writeClientLocked(readyForQuery(s.txStatus))
		s.mu.Unlock()
		return nil
	}
	sc := s.sc
	s.beginUnitLocked()
	s.q.push(reply{kind: rSync, unitStart: s.unitStart, unitFlags: s.unitFlags, began: s.unitBegan, text: s.unitText})
	s.unitOpen = false
	s.inBatch = false
	s.unflushed = true
	s.mu.Unlock()
	s.out = append(s.out, msgSync...)
	s.sendUpstream(sc)
	return nil
}

// onFlush forwards a Flush when the upstream owes replies.
func (s *session) onFlush(msg []byte) error {
	s.mu.Lock()
	sc := s.sc
	forward := sc != nil && s.q.len() > 0 && !s.skipUntilSync
	if forward {
		s.unflushed = true
	}
	s.mu.Unlock()
	if forward {
		s.out = append(s.out, msg...)
		s.sendUpstream(sc)
	}
	return nil
}

// onFunctionCall forwards the legacy FunctionCall; its replies end with
// ReadyForQuery like a simple query.
func (s *session) onFunctionCall(msg []byte) error {
	if s.inLostTx() {
		return s.lostTxQuery(msg, "", &queryInfo{})
	}
	sc, err := s.attached()
	if err != nil {
		return s.startFailed(err, true)
	}
	if !s.lockAttached(sc) {
		return s.onFunctionCall(msg)
	}
	s.beginUnitLocked()
	s.q.push(reply{kind: rQuery, query: &queryInfo{}, unitStart: s.unitStart, unitFlags: s.unitFlags, began: s.unitBegan})
	s.unitOpen = false
	s.unflushed = true
	s.mu.Unlock()
	s.out = append(s.out, msg...)
	s.sendUpstream(sc)
	return nil
}

// onCopyFromClient forwards COPY data while the upstream is in COPY FROM
// STDIN; otherwise such messages are dropped, as PostgreSQL drops them.
func (s *session) onCopyFromClient(msg []byte) error {
	s.mu.Lock()
	sc := s.sc
	// pgx and others stream COPY data right after the Query, before the
	// CopyInResponse arrives: forward while the upstream owes replies.
	forward := sc != nil && (s.copyIn || s.q.len() > 0)
	if forward {
		s.unflushed = true
	}
	s.mu.Unlock()
	if forward {
		s.out = append(s.out, msg...)
		s.sendUpstream(sc)
	}
	return nil
}

// skipping reports whether the client's batch is being dropped until Sync.
func (s *session) skipping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skipUntilSync
}

var _ = errors.New
var _ *authbridge.ServerConn
