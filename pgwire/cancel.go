package pgwire

import (
	"crypto/rand"
	"encoding/binary"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
)

// cancelKey is the BackendKeyData the gateway gives a client: its own
// process id and secret, unrelated to any upstream's, so a client can
// cancel its work whichever upstream runs it.
type cancelKey struct {
	pid    uint32
	secret uint32
}

// keyRegistry maps live cancel keys to sessions. Safe for concurrent use.
type keyRegistry struct {
	mu       sync.Mutex
	sessions map[uint32]*session // by pid
}

// register gives s a fresh key.
func (r *keyRegistry) register(s *session) cancelKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions == nil {
		r.sessions = map[uint32]*session{}
	}
	var b [8]byte
	for {
		rand.Read(b[:])
		k := cancelKey{pid: binary.BigEndian.Uint32(b[:4]) & 0x7fffffff, secret: binary.BigEndian.Uint32(b[4:])}
		if _, taken := r.sessions[k.pid]; k.pid != 0 && !taken {
			r.sessions[k.pid] = s
			return k
		}
	}
}

func (r *keyRegistry) unregister(k cancelKey) {
	r.mu.Lock()
	delete(r.sessions, k.pid)
	r.mu.Unlock()
}

// lookup returns the session whose key matches exactly, or nil.
func (r *keyRegistry) lookup(pid uint32, secret []byte) *session {
	r.mu.Lock()
	s := r.sessions[pid]
	r.mu.Unlock()
	if s == nil || len(secret) != 4 {
		return nil
	}
	var want [4]byte
	binary.BigEndian.PutUint32(want[:], s.key.secret)
	if !constantTimeEqual(want[:], secret) {
		return nil
	}
	return s
}

// handleCancel serves a CancelRequest, given what follows its request code
// (the pid and the secret). Unknown keys and malformed requests are ignored
// silently, as PostgreSQL does.
func (s *Server) handleCancel(rest []byte, log *zap.Logger) {
	// pgproto3 decodes the packet from the request code on.
	var req pgproto3.CancelRequest
	if req.Decode(append(binary.BigEndian.AppendUint32(nil, codeCancelRequest), rest...)) != nil {
		return
	}
	target := s.keys.lookup(req.ProcessID, req.SecretKey)
	if target == nil {
		log.Debug("cancel request with an unknown key")
		return
	}
	log.Debug("forwarding cancel request", zap.Uint32("pid", req.ProcessID))
	target.cancel()
}

// backendKeyData is the BackendKeyData message that gives a client k.
func (k cancelKey) backendKeyData() []byte {
	return encode(&pgproto3.BackendKeyData{ProcessID: k.pid, SecretKey: binary.BigEndian.AppendUint32(nil, k.secret)})
}
