package pgwire

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
)

// Peers is the other replicas of this gateway behind the same load
// balancer (internal/peers's Set): this replica's identifier, which goes
// into every cancel key it issues, and the addresses of the replicas that
// have a given identifier (this one excluded), read without waiting.
type Peers interface {
	ID() uint16
	Lookup(id uint16) []string
}

// The process id of a cancel key (BackendKeyData) is laid out so that any
// replica can tell which replica issued it:
//
//	bit 31     0 (a process id is positive)
//	bits 30-29 hops: how many more times the request may be forwarded
//	bits 28-16 the issuing replica's identifier (peers.ID)
//	bits 15-0  the session's slot, unique among the replica's live sessions
//
// Keys are issued with hops 1: a replica that receives a key of another
// forwards it with hops 0, and a request with hops 0 is never forwarded,
// so a request crosses at most one replica and cannot loop. The secret is
// random: 4 bytes for protocol 3.0, 32 for 3.2.
const (
	keyHopsShift = 29
	keyHopsMask  = 3
	keyPeerShift = 16
	keyPeerMask  = 1<<13 - 1
	keySlotMask  = 1<<16 - 1
	issuedHops   = 1
)

// Secret lengths: protocol 3.0's fixed 4 bytes, and what the gateway gives
// a 3.2 client (as PostgreSQL 18 does). A CancelRequest may carry 4 to 256.
const (
	secretLen30    = 4
	secretLen32    = 32
	minCancelKey   = 4
	maxCancelKey   = 256
	maxCancelSlots = keySlotMask // slot 0 is never used
)

// makePID assembles a key's process id.
func makePID(hops uint32, peer, slot uint16) uint32 {
	return (hops&keyHopsMask)<<keyHopsShift | (uint32(peer)&keyPeerMask)<<keyPeerShift | uint32(slot)
}

// splitPID takes a key's process id apart.
func splitPID(pid uint32) (hops uint32, peer, slot uint16) {
	return pid >> keyHopsShift & keyHopsMask, uint16(pid >> keyPeerShift & keyPeerMask), uint16(pid & keySlotMask)
}

// cancelKey is the BackendKeyData the gateway gives a client: its own
// process id and secret, unrelated to any upstream's, so a client can
// cancel its work whichever upstream runs it.
type cancelKey struct {
	pid    uint32
	secret []byte
}

// keyRegistry maps live cancel keys to sessions. Safe for concurrent use.
type keyRegistry struct {
	peer     uint16 // this replica's identifier; fixed for the process
	mu       sync.Mutex
	sessions map[uint16]*session // by slot
}

// errNoCancelSlot is the error for a session when every slot is taken
// (limits.max_client_conn keeps the sessions below the slot space; this
// covers sessions still ending).
func errNoCancelSlot() error {
	return &pgError{Severity: severityFatal, Code: pgerrcode.TooManyConnections,
		Message: "sorry, too many clients already", Detail: "Every cancel key slot of this gateway is in use."}
}

// register gives s a fresh key (s.key, set under the lock so that a
// concurrent lookup sees it whole) with a secret of secretLen random
// bytes: the slot is random (a key says little about the sessions around
// it), the first free one from there when taken.
func (r *keyRegistry) register(s *session, secretLen int) error {
	secret := make([]byte, secretLen)
	rand.Read(secret)
	var b [2]byte
	rand.Read(b[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions == nil {
		r.sessions = map[uint16]*session{}
	}
	if len(r.sessions) >= maxCancelSlots {
		return errNoCancelSlot()
	}
	slot := binary.BigEndian.Uint16(b[:])
	for _, taken := r.sessions[slot]; slot == 0 || taken; _, taken = r.sessions[slot] {
		slot++
	}
	s.key = cancelKey{pid: makePID(issuedHops, r.peer, slot), secret: secret}
	r.sessions[slot] = s
	return nil
}

func (r *keyRegistry) unregister(k cancelKey) {
	_, _, slot := splitPID(k.pid)
	r.mu.Lock()
	delete(r.sessions, slot) // a live session's slot is no other's
	r.mu.Unlock()
}

// lookup returns the session whose key matches pid (its hops aside) and
// secret exactly, or nil. A 3.0 session matches only its 4-byte secret,
// a 3.2 session only its whole 32 bytes; the compare takes the same time
// wherever the secrets differ.
func (r *keyRegistry) lookup(pid uint32, secret []byte) *session {
	_, peer, slot := splitPID(pid)
	if peer != r.peer {
		return nil
	}
	r.mu.Lock()
	s := r.sessions[slot]
	r.mu.Unlock()
	if s == nil || len(secret) != len(s.key.secret) || !constantTimeEqual(s.key.secret, secret) {
		return nil
	}
	return s
}

// parseCancel decodes what follows a CancelRequest's code: the process id
// and a secret of 4 to 256 bytes. A process id with its top bit set, or
// with more hops than the gateway issues (a forgery that would cross
// replicas sharing an identifier more than once), is no key the gateway
// issues.
func parseCancel(rest []byte) (pid uint32, secret []byte, ok bool) {
	var req pgproto3.CancelRequest
	if req.Decode(append(binary.BigEndian.AppendUint32(nil, codeCancelRequest), rest...)) != nil {
		return 0, nil, false
	}
	hops, _, _ := splitPID(req.ProcessID)
	if n := len(req.SecretKey); n < minCancelKey || n > maxCancelKey || req.ProcessID>>31 != 0 || hops > issuedHops {
		return 0, nil, false
	}
	return req.ProcessID, req.SecretKey, true
}

// handleCancel serves a CancelRequest, given what follows its request code
// (the pid and the secret). A key of a session here cancels the unit
// that session runs, if one still runs (session.cancel); a key of another
// replica goes to it (forward); anything else is ignored silently, as
// PostgreSQL does. The client sees its connection close in
// every case, once the request has reached the replica it names.
func (s *Server) handleCancel(rest []byte, log *zap.Logger) {
	pid, secret, ok := parseCancel(rest)
	hops, peer, _ := splitPID(pid)
	source := "client"
	if ok && hops == 0 {
		source = "peer"
	}
	s.metrics.CancelRequestsReceivedTotal.WithLabelValues(source).Inc()
	outcome := s.routeCancel(pid, secret, ok, log)
	s.metrics.CancelRequestsTotal.WithLabelValues(outcome).Inc()
	log.Debug("cancel request", zap.String("source", source), zap.String("outcome", outcome), zap.Uint16("peer", peer))
}

// routeCancel delivers, forwards or drops one request, and says which.
func (s *Server) routeCancel(pid uint32, secret []byte, ok bool, log *zap.Logger) (outcome string) {
	if !ok {
		return "ignored"
	}
	if target := s.keys.lookup(pid, secret); target != nil {
		target.cancel() // records the target only: as cheap as ignoring
		return "delivered"
	}
	hops, peer, slot := splitPID(pid)
	if hops == 0 || s.peers == nil {
		return "ignored" // forwarded once already, or no peers
	}
	// A peer that shares this replica's identifier (a hash collision) may
	// hold the session: it is asked too; its secret decides.
	addrs := s.peers.Lookup(peer)
	if len(addrs) == 0 {
		return "ignored"
	}
	if !s.forwardCancel(addrs, makePID(hops-1, peer, slot), secret, log) {
		return "failed"
	}
	return "forwarded"
}

// Forwarding limits: each forward is a dial and a write, then a wait for
// the peer to close (it has then passed the cancel on), each bounded; and
// a bounded number run at once, so that a flood of forged keys of a live
// peer costs a fixed number of connections.
const (
	forwardTimeout      = time.Second
	forwardCloseWait    = time.Second
	maxForwardsInFlight = 64
	// peerSilentFor is how long forwards to a peer whose dial timed out
	// fail at once: a peer that left without a word (kept in the set for
	// peers.KeepDeparted) would otherwise cost forwardTimeout per forged
	// key naming it, and 64 such keys a second would hold every forward
	// slot. A refused dial costs nothing and marks nothing.
	peerSilentFor = 5 * time.Second
)

// forwardCancel sends the request, with pid's hops already lowered, to
// every address (the peers with the key's identifier; never an address
// taken from the key) at once, and reports whether any took it. It
// returns when each peer has closed its end (or the wait ran out), so
// that the client's cancel connection closes once the cancel reached the
// replica holding the session, as with PostgreSQL.
func (s *Server) forwardCancel(addrs []string, pid uint32, secret []byte, log *zap.Logger) bool {
	msg, _ := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret}).Encode(nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent := false
	for _, addr := range addrs {
		select {
		case s.forwards <- struct{}{}:
		default:
			// Debug only: a flood of forged keys must not flood the log
			// (dsqlgate_cancel_requests_total{outcome="failed"} counts it).
			log.Debug("too many cancel requests being forwarded; dropping one", zap.Int("limit", maxForwardsInFlight))
			continue
		}
		if until, ok := s.silentPeers.Load(addr); ok {
			if time.Now().Before(until.(time.Time)) {
				<-s.forwards
				continue
			}
			s.silentPeers.Delete(addr)
		}
		wg.Go(func() {
			defer func() { <-s.forwards }()
			err := sendCancel(s.dialPeer, addr, msg)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					s.silentPeers.Store(addr, time.Now().Add(peerSilentFor))
				}
				log.Debug("forwarding a cancel request to a peer failed", zap.String("peer", addr), zap.Error(err))
				return
			}
			s.silentPeers.Delete(addr)
			mu.Lock()
			sent = true
			mu.Unlock()
		})
	}
	wg.Wait()
	return sent
}

// sendCancel writes msg (a CancelRequest) to addr, dial (with dial; nil:
// net.DialTimeout) and write within forwardTimeout, and waits, bounded,
// for addr to close the connection.
func sendCancel(dial func(network, addr string, timeout time.Duration) (net.Conn, error), addr string, msg []byte) error {
	if dial == nil {
		dial = net.DialTimeout
	}
	deadline := time.Now().Add(forwardTimeout)
	conn, err := dial("tcp", addr, forwardTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(forwardCloseWait))
	// The peer sends nothing: the read ends when it closes, having handled
	// the request (or when the wait runs out; the request was sent).
	var b [1]byte
	conn.Read(b[:])
	return nil
}

// newPeerID is this replica's identifier: the peers' when replicas are
// configured, else a random one (a key of this process is then told from
// a key of a process before it that a client may still hold).
func newPeerID(p Peers) uint16 {
	if p != nil {
		return p.ID() & keyPeerMask
	}
	var b [2]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint16(b[:]) & keyPeerMask
}

// backendKeyData is the BackendKeyData message that gives a client k.
func (k cancelKey) backendKeyData() []byte {
	secret := k.secret
	if secret == nil {
		secret = make([]byte, secretLen30) // the admin console's zero key
	}
	return encode(&pgproto3.BackendKeyData{ProcessID: k.pid, SecretKey: secret})
}
