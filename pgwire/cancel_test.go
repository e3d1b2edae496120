package pgwire

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/metrics"
	"github.com/dsqlgate/dsqlgate/internal/peers"
)

func TestKeyLayoutRoundTrip(t *testing.T) {
	for _, c := range []struct {
		hops       uint32
		peer, slot uint16
	}{{1, 0, 1}, {0, 0x1fff, 0xffff}, {1, 0x1234, 0x8000}, {3, 7, 42}} {
		pid := makePID(c.hops, c.peer, c.slot)
		if pid>>31 != 0 {
			t.Fatalf("pid %#x has its top bit set", pid)
		}
		hops, peer, slot := splitPID(pid)
		if hops != c.hops || peer != c.peer || slot != c.slot {
			t.Fatalf("%+v → %#x → %d %d %d", c, pid, hops, peer, slot)
		}
	}
	// Documented layout: hops at 30-29, peer at 28-16, slot at 15-0.
	if got := makePID(1, 0x1fff, 0xabcd); got != 0x3fffabcd {
		t.Fatalf("makePID(1, 0x1fff, 0xabcd) = %#x", got)
	}
}

// TestRegistryKeys: keys carry the replica's identifier and hops 1, slots
// are unique and never 0, 3.2 sessions get 32-byte secrets, and a lookup
// matches only the exact secret (whatever the hops), of the exact length.
func TestRegistryKeys(t *testing.T) {
	r := &keyRegistry{peer: 0x0abc}
	slots := map[uint16]bool{}
	var sessions []*session
	for i := range 1000 {
		s := &session{}
		n := secretLen30
		if i%2 == 1 {
			n = secretLen32
		}
		if err := r.register(s, n); err != nil {
			t.Fatal(err)
		}
		hops, peer, slot := splitPID(s.key.pid)
		if hops != issuedHops || peer != 0x0abc || slot == 0 || slots[slot] || len(s.key.secret) != n {
			t.Fatalf("key %#x (%d-byte secret): hops %d peer %#x slot %d (taken %v)", s.key.pid, len(s.key.secret), hops, peer, slot, slots[slot])
		}
		slots[slot] = true
		sessions = append(sessions, s)
	}
	short, long := sessions[0], sessions[1]
	if r.lookup(short.key.pid, short.key.secret) != short || r.lookup(long.key.pid, long.key.secret) != long {
		t.Fatal("exact keys do not match")
	}
	hops0 := short.key.pid &^ (keyHopsMask << keyHopsShift)
	if r.lookup(hops0, short.key.secret) != short {
		t.Fatal("a forwarded key (hops 0) does not match its session")
	}
	for name, c := range map[string]struct {
		pid    uint32
		secret []byte
	}{
		"flipped bit":          {short.key.pid, flip(short.key.secret, 0)},
		"flipped last bit":     {long.key.pid, flip(long.key.secret, 31)},
		"3.2 prefix":           {long.key.pid, long.key.secret[:4]},
		"3.0 with 32 bytes":    {short.key.pid, append(bytes.Clone(short.key.secret), make([]byte, 28)...)},
		"other replica":        {makePID(1, 0x0abd, uint16(short.key.pid)), short.key.secret},
		"free slot":            {makePID(1, 0x0abc, freeSlot(slots)), short.key.secret},
		"empty secret":         {short.key.pid, nil},
		"3.2 secret truncated": {long.key.pid, long.key.secret[:31]},
	} {
		if r.lookup(c.pid, c.secret) != nil {
			t.Errorf("%s: matched", name)
		}
	}
	r.unregister(short.key)
	if r.lookup(short.key.pid, short.key.secret) != nil {
		t.Fatal("an unregistered key matches")
	}
}

// TestRegistryFull: once every slot is taken, a session is refused with
// 53300 rather than looping; a freed slot is found again.
func TestRegistryFull(t *testing.T) {
	r := &keyRegistry{}
	var last *session
	for range maxCancelSlots {
		last = &session{}
		if err := r.register(last, secretLen30); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.register(&session{}, secretLen30); !isCode(err, pgerrcode.TooManyConnections) {
		t.Fatalf("register on a full registry: %v", err)
	}
	r.unregister(last.key)
	s := &session{}
	if err := r.register(s, secretLen30); err != nil || uint16(s.key.pid) != uint16(last.key.pid) {
		t.Fatalf("after a slot was freed: %v, slot %d want %d", err, uint16(s.key.pid), uint16(last.key.pid))
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func freeSlot(taken map[uint16]bool) uint16 {
	for s := uint16(1); ; s++ {
		if !taken[s] {
			return s
		}
	}
}

func TestParseCancel(t *testing.T) {
	body := func(pid uint32, n int) []byte {
		return append(binary.BigEndian.AppendUint32(nil, pid), bytes.Repeat([]byte{7}, n)...)
	}
	for _, c := range []struct {
		name string
		rest []byte
		ok   bool
	}{
		{"3.0", body(0x20010001, 4), true},
		{"3.2", body(0x20010001, 32), true},
		{"longest", body(0x20010001, 256), true},
		{"too long", body(0x20010001, 257), false},
		{"short secret", body(0x20010001, 3), false},
		{"no secret", body(0x20010001, 0), false},
		{"truncated pid", []byte{0, 1}, false},
		{"top bit", body(0xa0010001, 4), false},
	} {
		pid, secret, ok := parseCancel(c.rest)
		if ok != c.ok || ok && (pid != 0x20010001 || !bytes.Equal(secret, c.rest[4:])) {
			t.Errorf("%s: %#x %x %v", c.name, pid, secret, ok)
		}
	}
}

// peerListener is a replica's port that records the CancelRequests it
// gets and closes each connection after reading it.
type peerListener struct {
	l    net.Listener
	got  chan []byte
	hold time.Duration // wait before closing
}

// serve answers each connection by reading one CancelRequest, recording
// it and closing.
func (p *peerListener) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			var hdr [4]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			body := make([]byte, binary.BigEndian.Uint32(hdr[:])-4)
			if _, err := io.ReadFull(c, body); err != nil {
				return
			}
			time.Sleep(p.hold)
			p.got <- body
		}()
	}
}

func newPeerListener(t *testing.T, addr string, hold time.Duration) *peerListener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen on %s: %v", addr, err)
	}
	p := &peerListener{l: l, got: make(chan []byte, 16), hold: hold}
	t.Cleanup(func() { l.Close() })
	go p.serve()
	return p
}

// collidingAddrs finds two loopback addresses (127.0.0.x on one free
// port) whose identifiers collide, and a third of another identifier.
func collidingAddrs(t *testing.T) (a, b string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	seen := map[uint16]string{}
	for x := 2; x < 255; x++ {
		for y := 1; y < 255; y++ {
			addr := fmt.Sprintf("127.0.%d.%d:%d", y, x, port)
			id := peers.ID(addr)
			if other, ok := seen[id]; ok {
				return other, addr
			}
			seen[id] = addr
		}
	}
	t.Skip("no identifier collision among loopback addresses")
	return "", ""
}

// forwardingServer is a Server with only what handleCancel needs, whose
// peers are addrs (self is selfAddr).
func forwardingServer(t *testing.T, selfAddr string, addrs ...string) *Server {
	t.Helper()
	set, err := peers.New(context.Background(), config.Peers{Addresses: addrs, Self: selfAddr, Refresh: config.Duration(time.Hour)},
		&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, peers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Close)
	return &Server{metrics: metrics.New(), peers: set, keys: keyRegistry{peer: set.ID()}, forwards: make(chan struct{}, maxForwardsInFlight)}
}

func cancelBody(pid uint32, secret []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, pid), secret...)
}

// TestForwardFanOutAndHopLimit: a key of a peer goes, with hops 0, to
// every peer with its identifier (two that collide), and to no one else;
// a key with hops 0 is never forwarded; handleCancel returns only once
// the peers have closed.
func TestForwardFanOutAndHopLimit(t *testing.T) {
	addrA, addrB := collidingAddrs(t)
	pa, pb := newPeerListener(t, addrA, 200*time.Millisecond), newPeerListener(t, addrB, 0)
	other := newPeerListener(t, "127.0.0.1:0", 0)
	srv := forwardingServer(t, "127.0.0.1:1", addrA, addrB, other.l.Addr().String())
	id := peers.ID(addrA)
	secret := []byte{9, 8, 7, 6}

	start := time.Now()
	srv.handleCancel(cancelBody(makePID(1, id, 99), secret), zap.NewNop())
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("handleCancel returned after %v, before the slow peer closed", took)
	}
	want := cancelBody(makePID(0, id, 99), secret)
	for _, p := range []*peerListener{pa, pb} {
		select {
		case got := <-p.got:
			if !bytes.Equal(got[4:], want) {
				t.Fatalf("peer %s got %x, want %x", p.l.Addr(), got[4:], want)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("peer %s got nothing", p.l.Addr())
		}
	}

	srv.handleCancel(cancelBody(makePID(0, id, 99), secret), zap.NewNop())
	srv.handleCancel(cancelBody(makePID(1, id^1, 99), secret), zap.NewNop()) // no such peer (unless it collides)
	time.Sleep(100 * time.Millisecond)
	for _, p := range []*peerListener{pa, pb, other} {
		select {
		case got := <-p.got:
			if peers.ID(p.l.Addr().String()) != id^1 {
				t.Fatalf("peer %s got %x: a key with hops 0 or of no peer was forwarded", p.l.Addr(), got)
			}
		default:
		}
	}
	m := srv.metrics
	for label, want := range map[string]float64{"forwarded": 1, "ignored": 2} {
		if got := counterValue(m.CancelRequestsTotal.WithLabelValues(label)); got != want {
			t.Errorf("outcome %s: %v, want %v", label, got, want)
		}
	}
	if got := counterValue(m.CancelRequestsReceivedTotal.WithLabelValues("peer")); got != 1 {
		t.Errorf("received from peers: %v, want 1 (the hops 0 key)", got)
	}
}

// TestForwardFailures: a peer that refuses the connection makes the
// request failed, fast; beyond maxForwardsInFlight, requests fail at once.
func TestForwardFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	srv := forwardingServer(t, "127.0.0.1:1", down)
	pid := makePID(1, peers.ID(down), 5)
	start := time.Now()
	srv.handleCancel(cancelBody(pid, []byte{1, 2, 3, 4}), zap.NewNop())
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("a refused forward took %v", took)
	}
	for range maxForwardsInFlight {
		srv.forwards <- struct{}{}
	}
	srv.handleCancel(cancelBody(pid, []byte{1, 2, 3, 4}), zap.NewNop())
	if got := counterValue(srv.metrics.CancelRequestsTotal.WithLabelValues("failed")); got != 2 {
		t.Fatalf("failed: %v, want 2", got)
	}
}

// timeoutError is a dial that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// TestForwardSkipsSilentPeer: after a dial to a peer times out (a peer
// gone without a word, still in the set), forwards to it fail at once for
// peerSilentFor, without a dial, so forged keys naming it cannot hold the
// forward slots; a refused dial marks nothing.
func TestForwardSkipsSilentPeer(t *testing.T) {
	const silent, refusing = "127.0.0.1:7101", "127.0.0.1:7102"
	srv := forwardingServer(t, "127.0.0.1:1", silent, refusing)
	var dials sync.Map
	srv.dialPeer = func(_, addr string, _ time.Duration) (net.Conn, error) {
		n, _ := dials.LoadOrStore(addr, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		if addr == silent {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	}
	count := func(addr string) int32 {
		n, ok := dials.Load(addr)
		if !ok {
			return 0
		}
		return n.(*atomic.Int32).Load()
	}
	for range 3 {
		srv.handleCancel(cancelBody(makePID(1, peers.ID(silent), 5), []byte{1, 2, 3, 4}), zap.NewNop())
		srv.handleCancel(cancelBody(makePID(1, peers.ID(refusing), 5), []byte{1, 2, 3, 4}), zap.NewNop())
	}
	if got := count(silent); got != 1 {
		t.Errorf("%d dials to a peer whose dial timed out, want 1 (then none for %v)", got, peerSilentFor)
	}
	if got := count(refusing); got != 3 {
		t.Errorf("%d dials to a refusing peer, want 3 (a refusal marks nothing)", got)
	}
	if got := counterValue(srv.metrics.CancelRequestsTotal.WithLabelValues("failed")); got != 6 {
		t.Errorf("failed: %v, want 6", got)
	}
	if len(srv.forwards) != 0 {
		t.Errorf("%d forward slots still held", len(srv.forwards))
	}
}

// countingUpstream counts the cancels a session sends it; nothing else
// of an upstream is used by the code under test.
type countingUpstream struct {
	Upstream
	cancels atomic.Int32
}

func (u *countingUpstream) Cancel(context.Context) error {
	u.cancels.Add(1)
	return nil
}

// TestCancelOnlyWhileTheUnitRuns: a client's cancel goes upstream only
// while a unit runs, and only if that unit is still the one running when
// it is sent; an idle session keeps nothing for its next statement.
func TestCancelOnlyWhileTheUnitRuns(t *testing.T) {
	up := &countingUpstream{}
	s := &session{log: zap.NewNop()}
	s.cancelTarget, s.cancelGen = up, 1

	s.cancel() // idle
	waitCancels(t, up, 0)
	if s.cancelSent || s.cancelBusy != nil {
		t.Fatal("a cancel of an idle session left something behind")
	}

	s.cmu.Lock()
	s.working = true // a unit started (startStatementTimerLocked)
	s.cmu.Unlock()
	s.cancel()
	waitCancels(t, up, 1)
	s.cmu.Lock()
	sent := s.cancelSent
	s.cmu.Unlock()
	if !sent {
		t.Fatal("a delivered cancel is not recorded for settleCancel")
	}

	// Captured while unit 1 ran; unit 1 ended (and unit 2 runs) before
	// it was sent: nothing goes upstream.
	s.cmu.Lock()
	s.cancelSent = false
	ended := s.unitsEnded
	done := make(chan struct{})
	s.cancelBusy = done
	s.cmu.Unlock()
	s.unitEndedLocked()
	s.cancelUnit(up, 1, ended, done)
	waitCancels(t, up, 1)
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.cancelSent || s.cancelBusy != nil {
		t.Fatal("a stale cancel was recorded as sent")
	}
}

func waitCancels(t *testing.T, up *countingUpstream, want int32) {
	t.Helper()
	time.Sleep(50 * time.Millisecond)
	if got := up.cancels.Load(); got != want {
		t.Fatalf("%d cancels upstream, want %d", got, want)
	}
}

// TestNegotiateProtocol32: 3.2 is spoken without negotiation; 3.1 is
// answered with 3.0, 3.3 with 3.2 (the messages are checked in
// coldpath_test.go).
func TestNegotiateProtocol32(t *testing.T) {
	for minor, want := range map[uint32]uint32{1: protocolVersion30, 3: protocolVersion32, 0: protocolVersion30, 2: protocolVersion32} {
		var m pgproto3.NegotiateProtocolVersion
		msg := negotiateProtocolVersion(minor, nil)
		if err := m.Decode(msg[5:]); err != nil || m.NewestMinorProtocol != want {
			t.Errorf("minor %d: %v %#x, want %#x", minor, err, m.NewestMinorProtocol, want)
		}
	}
}

// TestGreetFailureFreesCancelSlot: a login that fails at the greeting (the
// upstream is down, the client vanished) frees its cancel key's slot. Else
// each such login takes one of the 65535 slots for good, and once clients
// have retried that many times (an upstream outage) every login is refused
// with 53300 until a restart.
func TestGreetFailureFreesCancelSlot(t *testing.T) {
	r := config.DefaultRoute(config.KindPostgres, "db")
	r.Endpoint, r.TLS, r.User, r.Password = "model.invalid:5432", config.TLSDisable, "gw", "gw-pw"
	r.Pool.QueryWaitTimeout = config.Duration(100 * time.Millisecond)
	g := startMemGatewayRoute(t, r)
	g.refuse.Store(true)
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		u := url.URL{Scheme: "postgres", User: url.UserPassword("u", memPassword), Host: g.addr, Path: "/db", RawQuery: "sslmode=disable"}
		c, err := pgconn.Connect(ctx, u.String())
		cancel()
		if err == nil {
			c.Close(context.Background())
			t.Fatal("connected with the upstream down")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.srv.keys.mu.Lock()
		n := len(g.srv.keys.sessions)
		g.srv.keys.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d cancel slots still taken after logins that failed at the greeting", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestForwardRefusesRaisedHops: a request whose hops exceed what the
// gateway issues (a client's forgery) is no key: it is neither forwarded
// nor delivered. Else replicas that share an identifier pass it between
// them up to three times (hops 3), each time to every one of them.
func TestForwardRefusesRaisedHops(t *testing.T) {
	addrA, addrB := collidingAddrs(t)
	pb := newPeerListener(t, addrB, 0)
	srv := forwardingServer(t, addrA, addrB) // this replica is A; B shares its identifier
	id := peers.ID(addrA)
	for _, hops := range []uint32{2, 3} {
		srv.handleCancel(cancelBody(makePID(hops, id, 99), []byte{1, 2, 3, 4}), zap.NewNop())
	}
	select {
	case got := <-pb.got:
		t.Fatalf("a key with raised hops was forwarded: %x", got)
	case <-time.After(200 * time.Millisecond):
	}
	if got := counterValue(srv.metrics.CancelRequestsTotal.WithLabelValues("ignored")); got != 2 {
		t.Fatalf("ignored: %v, want 2", got)
	}
}
