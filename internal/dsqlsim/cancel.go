package dsqlsim

import (
	"encoding/binary"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
)

// cancelTimeout bounds forwarding one CancelRequest to the backend.
const cancelTimeout = 5 * time.Second

// forwardCancel forwards a CancelRequest (body: code, process id, secret
// key) that arrived over TLS to the backend, when its key is the
// BackendKeyData of one of this server's sessions; otherwise it drops it,
// as PostgreSQL drops unknown keys. The client learns nothing either way.
func (s *Server) forwardCancel(sni string, body []byte, log *zap.Logger) {
	if !s.knownHost(sni) {
		log.Debug("cancel request without a known sni dropped")
		return
	}
	var req pgproto3.CancelRequest
	if err := req.Decode(body); err != nil {
		log.Debug("malformed cancel request dropped", zap.Error(err))
		return
	}
	target := s.sessionByBackendKey(req.ProcessID, req.SecretKey)
	if target == nil {
		log.Debug("cancel request for an unknown key dropped", zap.Uint32("backend_pid", req.ProcessID))
		return
	}
	conn, err := net.DialTimeout("unix", s.backendSocket(), backendDialTimeout)
	if err != nil {
		log.Warn("dial backend for cancel", zap.Error(err))
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(cancelTimeout))
	msg := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint32(msg, uint32(4+len(body)))
	msg = append(msg, body...)
	if _, err := conn.Write(msg); err != nil {
		log.Warn("write cancel request to backend", zap.Error(err))
		return
	}
	// The backend closes the connection once it has signalled the query;
	// waiting for that makes the cancel done when the client's ends.
	_, _ = io.Copy(io.Discard, conn)
	s.stats.cancels.Add(1)
	log.Info("cancel request forwarded", zap.Int64("target_conn_id", target.id), zap.Uint32("backend_pid", req.ProcessID))
}
