package pgwire

import (
	"time"

	"go.uber.org/zap"

	"github.com/jackc/pgerrcode"
)

// In session mode an upstream stays reserved for its client between
// transactions, and it may speak while the client is idle: a
// NotificationResponse for a LISTEN, a NoticeResponse, a ParameterStatus,
// or a FATAL error before it closes. These reach the client: at once when
// the session listens (a watcher goroutine reads the upstream while the
// client is idle), else just before the client's next statement runs
// there. An idle upstream is declared dead by a failed read or a FATAL
// error, never because it has bytes to read.

// maxIdleDrain is how many messages drainReserved reads at most.
const maxIdleDrain = 64

// idleDrainWait bounds the wait for the rest of a message that has begun
// to arrive on an idle upstream.
const idleDrainWait = time.Second

// idleMessageLocked handles one message that the reserved upstream us sent
// while its client was idle. It reports whether the upstream is still
// usable; fatal is the FATAL error it sent before closing, if that is why
// not.
func (s *session) idleMessageLocked(us *upstreamState, msg []byte) (ok bool, fatal []byte) {
	switch msg[0] {
	case 'A': // NotificationResponse
		s.writeClientLocked(msg)
	case 'N':
		if !s.belowMinMessagesLocked(msg) {
			s.writeClientLocked(msg)
		}
	case 'S':
		s.parameterStatusLocked(us, msg)
	case 'E':
		if sev := severityOf(msg); sev == severityFatal || sev == "PANIC" {
			return false, msg
		}
		s.log.Warn("idle upstream sent an error nobody asked for; closing it", zap.String("error", errorMessage(msg)))
		return false, nil
	default:
		s.log.Warn("idle upstream sent an unexpected message; closing it", zap.String("type", string(msg[:1])))
		return false, nil
	}
	return true, nil
}

// drainReserved reads what the idle reserved upstream sc has sent (the
// caller holds it and no one else reads it) and passes it on to the
// client. It reports whether sc is still usable.
func (s *session) drainReserved(sc Upstream, us *upstreamState) (alive bool) {
	if us == nil {
		return sc.Alive() // never attached: nothing of the client's
	}
	defer sc.Conn().SetReadDeadline(time.Time{})
	// Bounded: an upstream that keeps talking is alive, and the relay
	// passes on what it says after this as it does during work.
	for range maxIdleDrain {
		if !sc.Pending() {
			break
		}
		sc.Conn().SetReadDeadline(time.Now().Add(idleDrainWait))
		msg, err := us.fr.next()
		if err != nil {
			// Bytes that carried no message (a TLS record such as a
			// session ticket) are no sign of death.
			return isTimeout(err) && sc.Reader().Buffered() == 0 && us.fr.partial == 0
		}
		s.mu.Lock()
		ok, _ := s.idleMessageLocked(us, msg)
		s.flushClientLocked()
		s.mu.Unlock()
		if !ok {
			return false
		}
	}
	return true
}

// idleWatch is the goroutine that reads a listening session's reserved
// upstream while the client is idle. stopWatch ends it.
type idleWatch struct {
	sc   Upstream
	done chan struct{}
	stop bool // on session.mu: stopWatch wants the upstream back
	// lost is set (before done closes) when the watcher found the upstream
	// gone; it has then told the client and closed the client connection.
	lost bool
}

// startWatchLocked starts watching the just-reserved upstream of a
// listening session.
func (s *session) startWatchLocked(sc Upstream, us *upstreamState) {
	w := &idleWatch{sc: sc, done: make(chan struct{})}
	s.watch = w
	go s.watchIdle(w, us)
}

func (s *session) watchIdle(w *idleWatch, us *upstreamState) {
	defer close(w.done)
	for {
		msg, err := us.fr.next()
		s.mu.Lock()
		if err != nil && isTimeout(err) {
			if w.stop {
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			continue // a deadline left by the relay that reserved it
		}
		var fatal []byte
		ok := err == nil
		if ok {
			ok, fatal = s.idleMessageLocked(us, msg)
		}
		if ok {
			s.flushClientLocked()
			s.mu.Unlock()
			continue
		}
		// The upstream is gone, and with it the session's LISTEN
		// registrations: the client is told, as PostgreSQL's client would
		// be when its backend ends, and the session ends.
		w.lost = true
		s.log.Info("the upstream of a listening session was lost while the client was idle; ending the session", errField(err))
		if fatal == nil {
			fatal = appendErrorResponse(nil, listenLost())
		}
		s.writeClientLocked(fatal)
		s.flushClientLocked()
		s.mu.Unlock()
		s.conn.Close()
		return
	}
}

// stopWatch ends the watcher of the reserved upstream sc, if one runs,
// and waits for it. It reports whether the watcher found sc lost (the
// client has been told; the session ends).
func (s *session) stopWatch(sc Upstream) (lost bool) {
	s.mu.Lock()
	w := s.watch
	if w == nil || w.sc != sc {
		s.mu.Unlock()
		return false
	}
	s.watch = nil
	w.stop = true
	s.mu.Unlock()
	sc.Conn().SetReadDeadline(time.Now()) // wakes the watcher's read
	<-w.done
	sc.Conn().SetReadDeadline(time.Time{})
	return w.lost
}

// listenLost is what a listening client gets when its upstream is lost.
func listenLost() *pgError {
	return &pgError{Severity: severityFatal, Code: pgerrcode.ConnectionFailure,
		Message: "the upstream connection that held this session's LISTEN registrations was lost",
		Hint:    "Reconnect and LISTEN again; notifications sent in between were not received."}
}
