package pgwire

import (
	"encoding/binary"
	"errors"

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
	qi, flags := describeQuery(text)
	if s.inLostTx() {
		return s.lostTxQuery(msg, text, qi)
	}
	sc, err := s.attached()
	if err != nil {
		return s.startFailed(err, true)
	}
	s.mu.Lock()
	s.beginUnitLocked()
	s.q.push(reply{kind: rQuery, query: qi, unitStart: s.unitStart, unitFlags: s.unitFlags | flags})
	s.unitOpen = false
	s.us.unnamedOwner = nil // a simple Query destroys the unnamed statement
	s.unflushed = true
	s.mu.Unlock()
	s.out = append(s.out, msg...)
	s.sendUpstream(sc)
	return nil
}

// describeQuery splits a simple query into statements and notes what the
// session-state engine needs to know of each.
func describeQuery(text string) (*queryInfo, uint8) {
	stmts := sqllex.SplitStatements(text)
	qi := &queryInfo{stmts: make([]stmtInfo, len(stmts))}
	var flags uint8
	for i, st := range stmts {
		k := sqllex.Classify(st.Text)
		qi.stmts[i].kind = k
		flags |= unitFlagsFor(k)
		if k == sqllex.Set || k == sqllex.Reset {
			if set, ok := sqllex.ParseSet(st.Text); ok {
				qi.stmts[i].set = &set
			}
		}
	}
	return qi, flags
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
	dst = appendCString(dst, st.query)
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
// name and are parsed upstream only when that upstream lacks them.
func (s *session) onParse(msg []byte) error {
	if s.skipping() {
		return nil
	}
	p, ok := decodeParse(msg)
	if !ok {
		return s.malformed("Parse")
	}
	kind := sqllex.Classify(p.query)
	st := &preparedStmt{name: p.name, query: p.query, paramOIDs: p.oids, kind: kind}
	if kind == sqllex.Set || kind == sqllex.Reset {
		if set, ok := sqllex.ParseSet(p.query); ok {
			st.set = &set
		}
	}
	if s.inLostTx() {
		return s.lostTxParse(st)
	}
	sc, err := s.attached()
	if err != nil {
		return s.startFailed(err, false)
	}
	s.mu.Lock()
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
		s.out = append(s.out, msg...)
	case existing != nil:
		// PostgreSQL refuses a second Parse of a name; let the upstream
		// say so, about the existing statement, with its own semantics.
		s.ensureStmtLocked(us, existing)
		s.out = appendParse(s.out, existing.upstream, st)
		s.q.push(reply{kind: rParseDup, renameFrom: existing.upstream, renameTo: p.name})
	default:
		st.upstream = upstreamName(p.query, p.oids, s.gucs.desired["search_path"])
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
	sc, err := s.attached()
	if err != nil {
		return s.startFailed(err, false)
	}
	s.mu.Lock()
	s.beginUnitLocked()
	s.inBatch = true
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
	sc, err := s.attached()
	if err != nil {
		return s.startFailed(err, false)
	}
	s.mu.Lock()
	s.beginUnitLocked()
	s.inBatch = true
	if b[0] == 'P' {
		s.out = append(s.out, msg...)
		s.q.push(reply{kind: rDescribePortal})
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
	sc, err := s.attached()
	if err != nil {
		return s.startFailed(err, false)
	}
	s.mu.Lock()
	s.beginUnitLocked()
	s.inBatch = true
	st := s.portals[portal]
	if st != nil {
		s.unitFlags |= unitFlagsFor(st.kind)
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
	if s.sc == nil || s.lostTx {
		// No upstream: no portal can exist (portals end with their
		// transaction), and closing a missing portal is not an error.
		delete(s.portals, name)
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
	s.q.push(reply{kind: rSync, unitStart: s.unitStart, unitFlags: s.unitFlags})
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
	s.mu.Lock()
	s.beginUnitLocked()
	s.q.push(reply{kind: rQuery, query: &queryInfo{}, unitStart: s.unitStart, unitFlags: s.unitFlags})
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
