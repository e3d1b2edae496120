package pgwire

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/scram"
	"github.com/dsqlgate/dsqlgate/internal/scramclient"
)

// The relay's differential tests: a client message sequence is played
// against the model backend (modelserver_test.go) directly and through a
// gateway whose one route is that model, in transaction and in session
// pool mode, and the replies must be the same. That checks every message is
// answered exactly once and in order, ReadyForQuery statuses, the
// "ignore until Sync" rules, the session state the gateway moves between
// upstreams (prepared statements, settings), and that nothing hangs (every
// read has a deadline). Afterwards the client's session must still answer,
// end cleanly when the client leaves (no upstream kept), and a second
// client must get an upstream.
//
// Replies are compared normalised: ParameterStatus and NoticeResponse are
// dropped, ErrorResponse is compared by SQLSTATE, ReadyForQuery by status,
// DataRow by values, CommandComplete by tag, FunctionCallResponse by
// result, anything else by type.
//
// Each sequence is cut into segments at checkpoints; every segment ends
// with Sync and a terminator whose answer the reader waits for (its
// DataRow or FunctionCallResponse, or an error carrying its text in Where
// when the client is in a failed transaction): the last segment with a
// simple Query, a checkpoint with a FunctionCall (which, unlike a Query,
// keeps the unnamed statement). After a checkpoint the model closes the
// gateway's idle upstreams (those outside a transaction), so that the next
// segment runs on another upstream, which must not show.
//
// Cases with a bug show a known gateway bug: they are skipped (with the
// reason) until it is fixed, and are not fuzz seeds. RELAY_DEBUG=1 logs the gateway (at debug level) and
// the model's replies.

const (
	relayUpstreamUser       = "gw"   // the gateway's login on the model
	relayCheckpointFunction = 525252 // the checkpoint's terminator
	relayDatabase           = "relaydb"
	relayTerminator         = "select 424242"
	relayDeadline           = 2 * time.Second
	relayMaxOps             = 40
)

var relayUsers = map[string]string{"alice": "alice-pw", "bob": "bob-pw"}

// ---- client messages ----

type relayKind uint8

const (
	relayParse relayKind = iota
	relayBind
	relayDescribeS
	relayDescribeP
	relayExecute
	relayCloseS
	relayCloseP
	relaySync
	relayFlush
	relayQuery
	relayFunctionCall
	relayCheckpoint
	relayExecute2 // weights: a second Execute, Parse, Bind and Sync
	relayParse2
	relayBind2
	relaySync2
	numRelayKinds
)

// relayOp is one client message of a sequence, or a checkpoint.
type relayOp struct {
	kind    relayKind
	name    string   // Parse's, Describe's, Close's name; Bind's statement; Execute's portal
	portal  string   // Bind's portal
	text    string   // Parse's text
	stmts   []string // Query's statements, joined with ";"
	maxRows uint32   // Execute
	oid     uint32   // FunctionCall
	// send: the messages buffered so far are written after this one
	// (otherwise a segment goes in one write).
	send bool
}

func opParse(name, text string) relayOp { return relayOp{kind: relayParse, name: name, text: text} }
func opBind(portal, stmt string) relayOp {
	return relayOp{kind: relayBind, portal: portal, name: stmt}
}
func opDescribe(kind byte, name string) relayOp {
	if kind == 'S' {
		return relayOp{kind: relayDescribeS, name: name}
	}
	return relayOp{kind: relayDescribeP, name: name}
}
func opExecute(portal string, maxRows uint32) relayOp {
	return relayOp{kind: relayExecute, name: portal, maxRows: maxRows}
}
func opClose(kind byte, name string) relayOp {
	if kind == 'S' {
		return relayOp{kind: relayCloseS, name: name}
	}
	return relayOp{kind: relayCloseP, name: name}
}
func opQuery(stmts ...string) relayOp { return relayOp{kind: relayQuery, stmts: stmts} }
func opFunctionCall(oid uint32) relayOp {
	return relayOp{kind: relayFunctionCall, oid: oid}
}

var (
	opSync       = relayOp{kind: relaySync}
	opFlush      = relayOp{kind: relayFlush}
	opCheckpoint = relayOp{kind: relayCheckpoint}
)

// sent returns op with its send flag set.
func (op relayOp) sent() relayOp { op.send = true; return op }

func (op relayOp) String() string {
	s := ""
	switch op.kind {
	case relayParse:
		s = fmt.Sprintf("Parse(%q, %q)", op.name, op.text)
	case relayBind:
		s = fmt.Sprintf("Bind(portal %q, statement %q)", op.portal, op.name)
	case relayDescribeS:
		s = fmt.Sprintf("Describe(S %q)", op.name)
	case relayDescribeP:
		s = fmt.Sprintf("Describe(P %q)", op.name)
	case relayExecute:
		s = fmt.Sprintf("Execute(%q, %d)", op.name, op.maxRows)
	case relayCloseS:
		s = fmt.Sprintf("Close(S %q)", op.name)
	case relayCloseP:
		s = fmt.Sprintf("Close(P %q)", op.name)
	case relaySync:
		s = "Sync"
	case relayFlush:
		s = "Flush"
	case relayQuery:
		s = fmt.Sprintf("Query(%q)", strings.Join(op.stmts, ";"))
	case relayFunctionCall:
		s = fmt.Sprintf("FunctionCall(%d)", op.oid)
	case relayCheckpoint:
		s = fmt.Sprintf("-- checkpoint: Sync, FunctionCall(%d); the gateway's idle upstream is closed", relayCheckpointFunction)
	}
	if op.send {
		s += " [write]"
	}
	return s
}

func (op relayOp) message() pgproto3.FrontendMessage {
	switch op.kind {
	case relayParse:
		return &pgproto3.Parse{Name: op.name, Query: op.text}
	case relayBind:
		return &pgproto3.Bind{DestinationPortal: op.portal, PreparedStatement: op.name}
	case relayDescribeS:
		return &pgproto3.Describe{ObjectType: 'S', Name: op.name}
	case relayDescribeP:
		return &pgproto3.Describe{ObjectType: 'P', Name: op.name}
	case relayExecute:
		return &pgproto3.Execute{Portal: op.name, MaxRows: op.maxRows}
	case relayCloseS:
		return &pgproto3.Close{ObjectType: 'S', Name: op.name}
	case relayCloseP:
		return &pgproto3.Close{ObjectType: 'P', Name: op.name}
	case relaySync:
		return &pgproto3.Sync{}
	case relayFlush:
		return &pgproto3.Flush{}
	case relayQuery:
		return &pgproto3.Query{String: strings.Join(op.stmts, ";")}
	case relayFunctionCall:
		return &pgproto3.FunctionCall{Function: op.oid}
	}
	panic(fmt.Sprintf("no message for %v", op.kind))
}

func formatOps(ops []relayOp) string {
	var b strings.Builder
	for i, op := range ops {
		fmt.Fprintf(&b, "\t%2d %v\n", i+1, op)
	}
	return b.String()
}

// ---- the fuzz alphabet ----

var (
	relayParseNames = []string{"", "s1", "s2"}
	relayStmtNames  = []string{"", "s1", "s2", "s3"} // s3 is never prepared
	relayPortals    = []string{"", "p1"}
	relayTexts      = []string{
		"select 1",
		"select 2",
		"fail",
		"syntax_error",
		"begin",
		"commit",
		"rollback",
		"set application_name = 'a1'",
		"set application_name to c3",
		"set local application_name = 'l1'",
		"reset application_name",
		"show application_name",
		"set search_path = s1",
		"set search_path to 'S2'",
		"show search_path",
		"reset all",
		"deallocate s1",
		"deallocate all",
		"discard all",
		"",
		"select 1 from t",
		"start transaction",
		"end",
		"set application_name to default",
		"select 1; select 2",
	}
)

// decodeRelayOps reads a sequence from fuzz input: per message a byte
// whose low seven bits pick the kind (the top bit is the send flag), then
// one byte per argument, each an index into a table above.
func decodeRelayOps(data []byte) []relayOp {
	next := func() int {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return int(b)
	}
	pick := func(table []string) string { return table[next()%len(table)] }
	var ops []relayOp
	for len(data) > 0 && len(ops) < relayMaxOps {
		b := next()
		kind := relayKind((b & 0x7f) % int(numRelayKinds))
		var op relayOp
		switch kind {
		case relayParse, relayParse2:
			name := pick(relayParseNames)
			op = opParse(name, pick(relayTexts))
		case relayBind, relayBind2:
			portal := pick(relayPortals)
			op = opBind(portal, pick(relayStmtNames))
		case relayDescribeS:
			op = opDescribe('S', pick(relayStmtNames))
		case relayDescribeP:
			op = opDescribe('P', pick(relayPortals))
		case relayExecute, relayExecute2:
			a := next()
			op = opExecute(relayPortals[a%2], uint32(a/2%2))
		case relayCloseS:
			op = opClose('S', pick(relayStmtNames))
		case relayCloseP:
			op = opClose('P', pick(relayPortals))
		case relaySync, relaySync2:
			op = opSync
		case relayFlush:
			op = opFlush
		case relayQuery:
			a := next()
			stmts := make([]string, 1+a%3)
			for i := range stmts {
				stmts[i] = pick(relayTexts)
			}
			op = opQuery(stmts...)
		case relayFunctionCall:
			op = opFunctionCall(uint32(next() % 2))
		case relayCheckpoint:
			op = opCheckpoint
		}
		op.send = b&0x80 != 0
		ops = append(ops, op)
	}
	return ops
}

// encodeRelayOps is decodeRelayOps' inverse, for seeds; ok is false when
// an op is outside the alphabet.
func encodeRelayOps(ops []relayOp) (data []byte, ok bool) {
	index := func(table []string, s string) byte {
		i := slices.Index(table, s)
		if i < 0 {
			ok = false
			return 0
		}
		return byte(i)
	}
	ok = len(ops) <= relayMaxOps
	for _, op := range ops {
		head := byte(op.kind)
		if op.send {
			head |= 0x80
		}
		data = append(data, head)
		switch op.kind {
		case relayParse:
			data = append(data, index(relayParseNames, op.name), index(relayTexts, op.text))
		case relayBind:
			data = append(data, index(relayPortals, op.portal), index(relayStmtNames, op.name))
		case relayDescribeS, relayCloseS:
			data = append(data, index(relayStmtNames, op.name))
		case relayDescribeP, relayCloseP:
			data = append(data, index(relayPortals, op.name))
		case relayExecute:
			if op.maxRows > 1 {
				ok = false
			}
			data = append(data, index(relayPortals, op.name)+2*byte(op.maxRows))
		case relayQuery:
			if len(op.stmts) < 1 || len(op.stmts) > 3 {
				ok = false
			}
			data = append(data, byte(max(len(op.stmts)-1, 0)))
			for _, s := range op.stmts {
				data = append(data, index(relayTexts, s))
			}
		case relayFunctionCall:
			if op.oid > 1 {
				ok = false
			}
			data = append(data, byte(op.oid))
		}
	}
	return data, ok
}

// ---- playing a sequence ----

// relaySegment is a run of messages the reader waits on at its end: the
// sequence's messages up to a checkpoint (or the end), then Sync and a
// terminator (the last op).
type relaySegment struct {
	ops []relayOp
}

func relaySegments(ops []relayOp) []relaySegment {
	var segs []relaySegment
	var cur []relayOp
	for _, op := range ops {
		if op.kind == relayCheckpoint {
			segs = append(segs, relaySegment{ops: append(cur, opSync, opFunctionCall(relayCheckpointFunction))})
			cur = nil
			continue
		}
		cur = append(cur, op)
	}
	return append(segs, relaySegment{ops: append(cur, opSync, opQuery(relayTerminator))})
}

// relayConn is a raw client connection.
type relayConn struct {
	conn net.Conn
	fe   *pgproto3.Frontend
	pid  uint32 // from BackendKeyData
}

func (c *relayConn) close() { c.conn.Close() }

// play sends the segments one after the other, reading each one's
// replies, normalised, up to its terminator's ReadyForQuery; checkpoint,
// if set, runs after each segment but the last.
func (c *relayConn) play(segs []relaySegment, checkpoint func() error) ([]string, error) {
	var got []string
	for i, seg := range segs {
		if i > 0 && checkpoint != nil {
			if err := checkpoint(); err != nil {
				return got, err
			}
		}
		var buf []byte
		for i, op := range seg.ops {
			var err error
			if buf, err = op.message().Encode(buf); err != nil {
				return got, err
			}
			if op.send || i == len(seg.ops)-1 {
				if _, err := c.conn.Write(buf); err != nil {
					return got, fmt.Errorf("write: %w", err)
				}
				buf = buf[:0]
			}
		}
		replies, err := c.readUntil(seg.ops[len(seg.ops)-1])
		got = append(got, replies...)
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// readUntil reads normalised replies up to the ReadyForQuery that answers
// the terminator, a Query("select N") or a FunctionCall.
func (c *relayConn) readUntil(terminator relayOp) ([]string, error) {
	c.conn.SetReadDeadline(time.Now().Add(relayDeadline))
	defer c.conn.SetReadDeadline(time.Time{})
	where := fmt.Sprintf("function %d", terminator.oid)
	value := where
	if terminator.kind == relayQuery {
		where = terminator.stmts[0]
		value = strings.TrimPrefix(where, "select ")
	}
	var got []string
	answered := false
	for {
		msg, err := c.fe.Receive()
		if err != nil {
			return got, fmt.Errorf("read: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			answered = answered || (len(m.Values) == 1 && string(m.Values[0]) == value)
		case *pgproto3.FunctionCallResponse:
			answered = answered || where == fmt.Sprintf("function %s", m.Result)
		case *pgproto3.ErrorResponse:
			answered = answered || m.Where == where
		}
		if s, ok := relayNormalize(msg); ok {
			got = append(got, s)
		}
		if z, ok := msg.(*pgproto3.ReadyForQuery); ok {
			if !strings.ContainsRune("ITE", rune(z.TxStatus)) {
				return got, fmt.Errorf("ReadyForQuery with status %q", z.TxStatus)
			}
			if answered {
				return got, nil
			}
		}
	}
}

// relayNormalize is what the comparison sees of a message (false: not
// compared).
func relayNormalize(msg pgproto3.BackendMessage) (string, bool) {
	switch m := msg.(type) {
	case *pgproto3.ParameterStatus, *pgproto3.NoticeResponse:
		return "", false
	case *pgproto3.ErrorResponse:
		return "ErrorResponse " + m.Code, true
	case *pgproto3.ReadyForQuery:
		return "ReadyForQuery " + string(m.TxStatus), true
	case *pgproto3.DataRow:
		vals := make([]string, len(m.Values))
		for i, v := range m.Values {
			vals[i] = fmt.Sprintf("%q", v)
		}
		return "DataRow " + strings.Join(vals, ","), true
	case *pgproto3.CommandComplete:
		return "CommandComplete " + string(m.CommandTag), true
	case *pgproto3.FunctionCallResponse:
		return fmt.Sprintf("FunctionCallResponse %q", m.Result), true
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3."), true
}

// ---- connecting ----

// dialModel connects straight to the model, as user.
func dialModel(addr, user string) (*relayConn, error) {
	conn, err := net.DialTimeout("tcp", addr, relayDeadline)
	if err != nil {
		return nil, err
	}
	c := &relayConn{conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
	if err := c.startup(user, "", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// dialGateway logs in to the gateway with SCRAM.
func dialGateway(addr, user string) (*relayConn, error) {
	conn, err := net.DialTimeout("tcp", addr, relayDeadline)
	if err != nil {
		return nil, err
	}
	c := &relayConn{conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
	sc := scramclient.New(relayUsers[user], nil)
	sc.SaltedPassword = relaySaltedPassword(relayUsers[user])
	if err := c.startup(user, relayDatabase, sc); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// startup sends the startup message and reads up to ReadyForQuery,
// answering SCRAM with sc.
func (c *relayConn) startup(user, database string, sc *scramclient.Client) error {
	c.conn.SetDeadline(time.Now().Add(5 * relayDeadline))
	defer c.conn.SetDeadline(time.Time{})
	params := map[string]string{"user": user}
	if database != "" {
		params["database"] = database
	}
	c.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params})
	if err := c.fe.Flush(); err != nil {
		return err
	}
	for {
		msg, err := c.fe.Receive()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationSASL:
			if sc == nil {
				return errors.New("SCRAM asked for on a connection without a password")
			}
			c.fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: sc.Mechanism(), Data: sc.First()})
		case *pgproto3.AuthenticationSASLContinue:
			final, err := sc.Final(slices.Clone(m.Data))
			if err != nil {
				return err
			}
			c.fe.Send(&pgproto3.SASLResponse{Data: final})
		case *pgproto3.AuthenticationSASLFinal:
			if err := sc.Verify(slices.Clone(m.Data)); err != nil {
				return err
			}
			continue
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("login refused: %s %s", m.Code, m.Message)
		case *pgproto3.BackendKeyData:
			c.pid = m.ProcessID
			continue
		case *pgproto3.ReadyForQuery:
			return nil
		default:
			continue
		}
		if err := c.fe.Flush(); err != nil {
			return err
		}
	}
}

// relaySalted caches the client's PBKDF2 per password and salt: fuzzing
// logs in thousands of times.
var relaySalted sync.Map

func relaySaltedPassword(password string) func(salt []byte, iterations int) ([]byte, error) {
	return func(salt []byte, iterations int) ([]byte, error) {
		key := fmt.Sprintf("%s\x00%x\x00%d", password, salt, iterations)
		if v, ok := relaySalted.Load(key); ok {
			return v.([]byte), nil
		}
		salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
		if err != nil {
			return nil, err
		}
		relaySalted.Store(key, salted)
		return salted, nil
	}
}

// ---- the gateways ----

// relayFixture is one model and one gateway per pool mode in front of it.
type relayFixture struct {
	model *modelServer
	gws   []*relayGateway
}

type relayGateway struct {
	mode string
	addr string
	srv  *Server
	ups  *memUpstreams
}

func newRelayFixture() (fx *relayFixture, err error) {
	fx = &relayFixture{}
	defer func() {
		if err != nil {
			fx.close()
		}
	}()
	if fx.model, err = startModelServer(); err != nil {
		return nil, err
	}
	for _, mode := range []string{config.PoolTransaction, config.PoolSession} {
		var gw *relayGateway
		if gw, err = startRelayGateway(fx.model.addr(), mode); err != nil {
			return nil, err
		}
		fx.gws = append(fx.gws, gw)
	}
	return fx, nil
}

func startRelayGateway(modelAddr, mode string) (*relayGateway, error) {
	cfg := config.Default()
	for _, name := range slices.Sorted(maps.Keys(relayUsers)) {
		v, err := scram.GenerateVerifier(relayUsers[name])
		if err != nil {
			return nil, err
		}
		cfg.Users = append(cfg.Users, config.User{Name: name, Verifier: v.Encode()})
	}
	r := config.DefaultRoute(config.KindPostgres, relayDatabase)
	r.Endpoint, r.TLS, r.User, r.Password = modelAddr, config.TLSDisable, relayUpstreamUser, "gw-pw"
	r.Pool.Size = 2
	r.Pool.Mode = mode
	// The OCC retry holds back the replies of every unit it could retry
	// (occretry.go): on, as on a DSQL route, so that the oracle checks the
	// replies it hands out.
	r.OCCRetry.Enabled = true
	cfg.Routes = []config.Route{r}
	cfg.Listen = "127.0.0.1:0"
	cfg.Metrics.Listen = ""
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	route, err := newMemRoute(cfg.Routes[0], nil)
	if err != nil {
		return nil, err
	}
	ups := newMemUpstreams(route)
	opts := Options{}
	if os.Getenv("RELAY_DEBUG") != "" {
		lg, _ := zap.NewDevelopment()
		opts.Logger = lg.With(zap.String("mode", mode))
	}
	srv, err := NewServer(cfg, ups, opts)
	if err != nil {
		ups.close()
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ups.close()
		return nil, err
	}
	go srv.Serve(l)
	return &relayGateway{mode: mode, addr: l.Addr().String(), srv: srv, ups: ups}, nil
}

func (fx *relayFixture) close() {
	for _, gw := range fx.gws {
		gw.srv.Close()
		gw.ups.close()
	}
	if fx.model != nil {
		fx.model.close()
	}
}

// settle waits until the gateway has no client session and holds no
// upstream (every open one idle in the pool).
func (gw *relayGateway) settle() error { return gw.settleWithin(relayDeadline) }

func (gw *relayGateway) settleWithin(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		gw.srv.mu.Lock()
		n := len(gw.srv.sessions)
		gw.srv.mu.Unlock()
		st := gw.ups.routes[relayDatabase].pool.stats()
		if n == 0 && st.open == st.idle && st.waiting == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d client sessions still running and %d of %d upstreams held %v after the clients left", n, st.open-st.idle, st.open, wait)
		}
		time.Sleep(time.Millisecond)
	}
}

// detached waits until no client session holds an upstream outside a
// transaction (at ReadyForQuery 'I' with nothing owed a session lets its
// upstream go: back to the pool, or reserved in session mode), so that the
// model's closing the idle ones hits none in use. A session can decide
// that after its client has read the ReadyForQuery (onReadyForQueryLocked
// writes it, then waits for the client goroutine's upstream flush with mu
// released, and that goroutine flushes the client meanwhile), hence the
// wait.
func (gw *relayGateway) detached() error {
	deadline := time.Now().Add(relayDeadline)
	for {
		gw.srv.mu.Lock()
		sessions := make([]*session, 0, len(gw.srv.sessions))
		for sess := range gw.srv.sessions {
			sessions = append(sessions, sess)
		}
		gw.srv.mu.Unlock()
		held := 0
		for _, sess := range sessions {
			sess.mu.Lock()
			if sess.sc != nil && sess.txStatus == 'I' {
				held++
			}
			sess.mu.Unlock()
		}
		if held == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d sessions still hold their upstream %v after ReadyForQuery 'I'", held, relayDeadline)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// relayShared is the fixture of the fuzz target: started on first use,
// shared by every input of the process.
var relayShared struct {
	once sync.Once
	fx   *relayFixture
	err  error
}

func sharedRelayFixture(t testing.TB) *relayFixture {
	relayShared.once.Do(func() { relayShared.fx, relayShared.err = newRelayFixture() })
	if relayShared.err != nil {
		t.Fatalf("relay fixture: %v", relayShared.err)
	}
	return relayShared.fx
}

// ---- the oracle ----

// checkRelay plays ops against the model alone, then through each
// gateway, and compares. Every sequence starts on fresh upstreams (the
// model closes the gateways' idle ones first), so that a failure replays
// alone: nothing one sequence leaves on an upstream reaches the next.
//
// With quarantine, a sequence the gateway gets wrong is skipped instead
// when the model noted a situation of a known gateway bug in it (see
// modelNote*): the fuzz target keeps looking for other bugs meanwhile.
func checkRelay(t testing.TB, fx *relayFixture, ops []relayOp, quarantine bool) {
	t.Helper()
	for _, gw := range fx.gws {
		// After a sequence that failed, its session may take up to
		// abandonTimeout to end.
		if err := gw.settleWithin(abandonTimeout + relayDeadline); err != nil {
			t.Fatalf("%s pool mode, before the sequence: %v", gw.mode, err)
		}
	}
	fx.model.killIdle(relayUpstreamUser)
	segs := relaySegments(ops)
	direct, err := dialModel(fx.model.addr(), "direct")
	if err != nil {
		t.Fatalf("connect to the model: %v", err)
	}
	want, err := direct.play(segs, nil)
	direct.conn.Write(mustEncode(&pgproto3.Terminate{}))
	direct.close()
	notes := fx.model.notes(direct.pid)
	if err != nil {
		t.Fatalf("the model alone failed (a harness or model bug): %v\nsequence:\n%sreplies:\n%s", err, formatOps(ops), indent(want))
	}
	if os.Getenv("RELAY_DEBUG") != "" {
		t.Logf("sequence:\n%sthe model's replies:\n%s", formatOps(ops), indent(want))
	}
	for _, gw := range fx.gws {
		if msg := checkGateway(fx, gw, segs, want, len(ops)%2 == 0); msg != "" {
			if quarantine && len(notes) > 0 {
				// The bug may leave the session busy: it ends within
				// abandonTimeout of its client's leaving.
				for _, gw := range fx.gws {
					if err := gw.settleWithin(abandonTimeout + relayDeadline); err != nil {
						t.Fatalf("%s pool mode, after a quarantined sequence: %v\nsequence:\n%s", gw.mode, err, formatOps(ops))
					}
				}
				t.Skipf("%s pool mode: quarantined (known gateway bugs: %s): %s", gw.mode, strings.Join(notes, "; "), msg)
			}
			t.Errorf("%s pool mode: %s\nsequence:\n%s", gw.mode, msg, formatOps(ops))
		}
	}
}

// checkGateway plays segs through gw and returns what went wrong ("" for
// nothing).
func checkGateway(fx *relayFixture, gw *relayGateway, segs []relaySegment, want []string, terminate bool) string {
	c, err := dialGateway(gw.addr, "alice")
	if err != nil {
		return fmt.Sprintf("login: %v", err)
	}
	got, err := c.play(segs, func() error {
		if err := gw.detached(); err != nil {
			return err
		}
		fx.model.killIdle(relayUpstreamUser)
		return nil
	})
	if err != nil {
		c.close()
		return fmt.Sprintf("%v\n%s", err, sideBySide(want, got))
	}
	if !slices.Equal(got, want) {
		c.close()
		return "the replies differ\n" + sideBySide(want, got)
	}
	// Still usable: a statement gets its answer.
	status := want[len(want)-1]
	if _, err := c.conn.Write(mustEncode(&pgproto3.Query{String: "select 7"})); err != nil {
		c.close()
		return fmt.Sprintf("write after the sequence: %v", err)
	}
	after, err := c.readUntilReady()
	wantAfter := []string{"RowDescription", `DataRow "7"`, "CommandComplete SELECT 1", status}
	if status == "ReadyForQuery E" {
		wantAfter = []string{"ErrorResponse 25P02", status}
	}
	if err != nil || !slices.Equal(after, wantAfter) {
		c.close()
		return fmt.Sprintf("after the sequence, select 7 got %q, %v; want %q", after, err, wantAfter)
	}
	if terminate {
		c.conn.Write(mustEncode(&pgproto3.Terminate{}))
	}
	c.close()
	if err := gw.settle(); err != nil {
		return err.Error()
	}
	// Another client (another user) gets an upstream.
	other, err := dialGateway(gw.addr, "bob")
	if err != nil {
		return fmt.Sprintf("second client: login: %v", err)
	}
	defer other.close()
	if _, err := other.conn.Write(mustEncode(&pgproto3.Query{String: "select 1"})); err != nil {
		return fmt.Sprintf("second client: %v", err)
	}
	reply, err := other.readUntilReady()
	if want := []string{"RowDescription", `DataRow "1"`, "CommandComplete SELECT 1", "ReadyForQuery I"}; err != nil || !slices.Equal(reply, want) {
		return fmt.Sprintf("second client: select 1 got %q, %v; want %q", reply, err, want)
	}
	other.conn.Write(mustEncode(&pgproto3.Terminate{}))
	other.close()
	if err := gw.settle(); err != nil {
		return "after the second client: " + err.Error()
	}
	return ""
}

// readUntilReady reads normalised replies up to a ReadyForQuery.
func (c *relayConn) readUntilReady() ([]string, error) {
	c.conn.SetReadDeadline(time.Now().Add(relayDeadline))
	defer c.conn.SetReadDeadline(time.Time{})
	var got []string
	for {
		msg, err := c.fe.Receive()
		if err != nil {
			return got, err
		}
		if s, ok := relayNormalize(msg); ok {
			got = append(got, s)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return got, nil
		}
	}
}

func mustEncode(msg pgproto3.FrontendMessage) []byte {
	b, err := msg.Encode(nil)
	if err != nil {
		panic(err)
	}
	return b
}

func indent(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("\t" + l + "\n")
	}
	return b.String()
}

// sideBySide shows the model's replies (want) next to the gateway's, with
// the first difference marked.
func sideBySide(want, got []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\t    %-36s %s\n", "PostgreSQL (model)", "through the gateway")
	marked := false
	for i := range max(len(want), len(got)) {
		w, g := "", ""
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		mark := "  "
		if w != g && !marked {
			mark, marked = "=>", true
		}
		fmt.Fprintf(&b, "\t%s %-36s %s\n", mark, w, g)
	}
	return b.String()
}

// ---- the tests ----

// relayCases are sequences worth keeping: the fuzz target's seeds, and
// the table test's cases.
var relayCases = []struct {
	name string
	ops  []relayOp
	bug  string // the gateway bug the case shows (it fails until fixed); not a fuzz seed
}{
	{"error in batch, then Query before Sync", []relayOp{
		opParse("", "fail"), opBind("", ""), opExecute("", 0), opQuery("select 1"), opSync}, ""},
	{"error in batch, then Query before Sync, written apart", []relayOp{
		opParse("", "fail"), opBind("", ""), opExecute("", 0).sent(), opQuery("select 1").sent(), opSync}, ""},
	{"Bind of a missing statement, then FunctionCall before Sync", []relayOp{
		opBind("", "s3"), opFunctionCall(1), opSync}, ""},
	{"begin, fail, rollback in simple queries", []relayOp{
		opQuery("begin"), opQuery("fail"), opQuery("select 1"), opQuery("rollback"), opQuery("select 2")}, ""},
	{"begin; fail; rollback in one query", []relayOp{
		opQuery("begin", "fail", "rollback"), opQuery("select 1"), opQuery("rollback")}, ""},
	{"explicit transaction with an error in extended protocol, then rollback", []relayOp{
		opParse("", "begin"), opBind("", ""), opExecute("", 0), opSync,
		opParse("s1", "fail"), opBind("", "s1"), opExecute("", 0), opSync,
		opParse("", "select 1"), opBind("", ""), opExecute("", 0), opSync,
		opParse("", "rollback"), opBind("", ""), opExecute("", 0), opSync,
		opBind("", "s1"), opDescribe('P', ""), opSync}, ""},
	{"Parse of a duplicate name", []relayOp{
		opParse("s1", "select 1"), opParse("s1", "select 2"), opSync,
		opParse("s1", "select 2"), opSync, opBind("", "s1"), opExecute("", 0), opSync}, ""},
	{"Query in the middle of a batch without an error", []relayOp{
		opParse("s1", "select 1"), opBind("", "s1"), opExecute("", 0), opQuery("select 2"),
		opBind("p1", "s1"), opExecute("p1", 0), opSync}, ""},
	{"pipelined simple queries", []relayOp{
		opQuery("select 1"), opQuery("begin", "select 2"), opQuery("fail"), opQuery("commit"),
		opQuery("select 1", "fail", "select 2"), opQuery(""), opQuery("select 2")}, ""},
	{"Execute of a missing portal", []relayOp{
		opExecute("p1", 0), opParse("", "select 1"), opSync, opExecute("", 0), opSync}, ""},
	{"Describe of a missing statement", []relayOp{
		opDescribe('S', "s3"), opSync, opParse("s1", "select 1"), opSync, opDescribe('S', "s1"), opDescribe('S', "s3"), opSync}, ""},
	{"Close, then Bind of the closed statement", []relayOp{
		opParse("s1", "select 1"), opSync, opClose('S', "s1"), opBind("", "s1"), opExecute("", 0), opSync,
		opParse("s1", "select 2"), opBind("", "s1"), opExecute("", 0), opSync}, ""},
	{"portal fetched in parts", []relayOp{
		opQuery("begin"), opParse("s1", "select 1"), opBind("p1", "s1"), opExecute("p1", 1), opExecute("p1", 1),
		opExecute("p1", 0), opSync, opExecute("p1", 0), opQuery("commit"), opExecute("p1", 0), opSync}, ""},
	{"settings survive a change of upstream", []relayOp{
		opQuery("set application_name = 'a1'"), opQuery("begin", "set search_path = s1", "rollback"),
		opCheckpoint, opQuery("show application_name"), opQuery("show search_path"),
		opParse("", "set search_path to 'S2'"), opBind("", ""), opExecute("", 0), opSync,
		opCheckpoint, opQuery("show search_path"), opQuery("reset all"), opQuery("show application_name")}, ""},
	{"prepared statements survive a change of upstream", []relayOp{
		opParse("s1", "select 1"), opParse("", "select 2"), opSync, opCheckpoint,
		opBind("", "s1"), opExecute("", 0), opBind("p1", ""), opExecute("p1", 0), opSync, opCheckpoint,
		opDescribe('S', ""), opDescribe('S', "s1"), opSync}, ""},
	{"SET LOCAL and SET in a transaction", []relayOp{
		opQuery("begin"), opQuery("set application_name = 'a1'"), opQuery("set local application_name = 'l1'"),
		opQuery("show application_name"), opQuery("commit"), opQuery("show application_name"),
		opQuery("set local application_name = 'l1'", "show application_name"), opQuery("show application_name")}, ""},
	{"error at Sync-less Flush", []relayOp{
		opParse("", "select 1"), opBind("", ""), opExecute("", 0), opFlush.sent(),
		opParse("s1", "syntax_error"), opFlush.sent(), opBind("", ""), opSync}, ""},
	{"transaction left open when the client leaves", []relayOp{
		opQuery("begin", "set application_name = 'a1'")}, ""},
	{"failed transaction left when the client leaves", []relayOp{
		opQuery("begin"), opParse("", "fail"), opBind("", ""), opExecute("", 0), opSync}, ""},
	{"commit and rollback outside a transaction", []relayOp{
		opQuery("commit"), opParse("", "rollback"), opBind("", ""), opExecute("", 0), opSync, opQuery("end", "select 1")}, ""},
	{"FunctionCall in a failed transaction and of a missing function", []relayOp{
		opFunctionCall(0), opQuery("begin"), opQuery("fail"), opFunctionCall(1), opQuery("rollback"), opFunctionCall(1)}, ""},
	{"empty statements", []relayOp{
		opParse("", ""), opBind("", ""), opDescribe('P', ""), opExecute("", 0), opSync, opQuery("", "")}, ""},
	{"ROLLBACK prepared in a failed transaction", []relayOp{
		opQuery("begin"), opQuery("fail"), opParse("s1", "rollback"), opBind("", "s1"), opExecute("", 0), opSync,
		opParse("s2", "select 1"), opBind("", "s2"), opExecute("", 0), opSync}, ""},
	{"Parse the gateway answers itself, skipped after an error", []relayOp{
		opParse("s1", "select 1"), opSync, opClose('S', "s1"), opSync,
		opDescribe('S', "s3"), opParse("s1", "select 1"), opSync, opDescribe('S', "s1"), opSync}, ""},
	{"simple Query drops the unnamed statement", []relayOp{
		opParse("", "select 1"), opSync, opQuery("select 2"), opBind("", ""), opExecute("", 0), opSync}, ""},
	{"unnamed statement that failed re-parsed after a simple Query", []relayOp{
		opParse("", "select 1; select 2"), opSync, opQuery("select 1"), opBind("", ""), opSync}, ""},
	{"Parse the gateway answers itself, in a failed transaction", []relayOp{
		opParse("s1", "select 1"), opSync, opQuery("begin"), opQuery("fail"),
		opParse("s2", "select 1"), opSync, opQuery("rollback"), opBind("", "s2"), opSync}, ""},
	{"DEALLOCATE of a missing statement is prepared without error", []relayOp{
		opParse("", "deallocate s1"), opSync, opParse("s1", "select 1"), opBind("", ""), opExecute("", 0), opSync}, ""},
	{"DEALLOCATE prepared, run twice", []relayOp{
		opParse("s1", "select 1"), opParse("", "deallocate s1"), opBind("", ""), opExecute("", 0),
		opBind("", ""), opExecute("", 0), opSync}, ""},
	{"DEALLOCATE of a missing statement in a failed transaction", []relayOp{
		opQuery("begin"), opQuery("fail"), opQuery("deallocate s1"), opQuery("rollback")}, ""},
	{"Close skipped after an error", []relayOp{
		opParse("s1", "select 1"), opSync, opExecute("p1", 0), opClose('S', "s1"), opSync,
		opBind("", "s1"), opExecute("", 0), opSync}, ""},
	{"unnamed Parse skipped after an error", []relayOp{
		opParse("", "select 1"), opSync, opExecute("p1", 0), opParse("", "select 2"), opSync,
		opCheckpoint, opBind("", ""), opExecute("", 0), opSync}, ""},
	{"re-Parse of a name whose first Parse fails", []relayOp{
		opQuery("begin"), opQuery("fail"), opParse("s1", "select 1"), opSync, opQuery("rollback"),
		opParse("s1", "select 2"), opSync, opParse("s2", "select 1"), opBind("", "s2"), opExecute("", 0), opSync}, ""},
	{"Parse of an existing name with an invalid text", []relayOp{
		opParse("s1", "select 1"), opSync, opParse("s1", "select 1; select 2"), opSync}, ""},
	{"DISCARD ALL keeps the unnamed statement", []relayOp{
		opParse("", "select 1"), opParse("s1", "discard all"), opBind("p1", "s1"), opExecute("p1", 0), opSync,
		opCheckpoint, opBind("", ""), opExecute("", 0), opSync}, ""},
}

// TestRelayMatchesServer plays each case through the gateway and against
// the model alone.
func TestRelayMatchesServer(t *testing.T) {
	fx, err := newRelayFixture()
	if err != nil {
		t.Fatal(err)
	}
	defer fx.close()
	for _, tc := range relayCases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.bug != "" {
				t.Skipf("known gateway bug, not fixed yet (statement bookkeeping is applied when a message is sent, and not undone when the server skips or refuses it): %s", tc.bug)
			}
			checkRelay(t, fx, tc.ops, false)
		})
	}
}

// relayQuarantine makes the fuzz target skip the sequences in which it
// finds the gateway wrong where a known gateway bug may show (the cases of
// relayCases with a bug, which fail until it is fixed). Turn it off, and
// remove the model's note of each bug fixed, to look for them again.
const relayQuarantine = false

// FuzzRelayMatchesServer plays sequences decoded from the input (see
// decodeRelayOps) through the gateway and against the model alone. One
// model and one gateway per pool mode serve the whole run.
func FuzzRelayMatchesServer(f *testing.F) {
	for _, tc := range relayCases {
		if data, ok := encodeRelayOps(tc.ops); ok && tc.bug == "" {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ops := decodeRelayOps(data)
		if len(ops) == 0 {
			return
		}
		checkRelay(t, sharedRelayFixture(t), ops, relayQuarantine)
	})
}
