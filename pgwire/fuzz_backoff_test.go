package pgwire

import (
	"testing"
	"time"
)

// FuzzAuthBackoff drives authBackoff (backoff.go) with any sequence of
// authentications beginning and ending, successes and failures, from a few
// addresses, while its clock moves. Against a model of what happened it
// checks that: nothing is ever refused, whatever failed before and however
// many authentications are in progress; a success is never delayed; a
// delay is one of the doubling steps up to maxDelay, and only follows more
// than limit failures within the last window; in any window no address
// gets more than 2×limit failures answered without delay (the bound on
// fast guessing), successes in between or not; and the records are only
// of addresses that failed, never counting more failures than they had.
func FuzzAuthBackoff(f *testing.F) {
	// Each op byte: top two bits the operation (begin, end ok, end
	// failed, advance the clock), the rest the address or the time.
	f.Add([]byte{0x00, 0x80, 0x00, 0x80, 0x00, 0x80, 0x00, 0x80, 0x00, 0x80}, uint8(3), uint8(60), uint16(2000))
	f.Add([]byte{0x00, 0x00, 0x00, 0x80, 0x80, 0xff, 0x00, 0x80, 0x40}, uint8(1), uint8(1), uint16(1))
	f.Add([]byte{0x00, 0x80, 0xd0, 0x00, 0x80, 0xd0, 0x00, 0x80, 0x01, 0x81, 0x02, 0x42}, uint8(2), uint8(10), uint16(65535))
	f.Add([]byte{0x00, 0x80, 0x00, 0x80, 0x00, 0x80, 0x00, 0x00, 0x00, 0x40, 0x40, 0x00, 0x80, 0x00, 0x40}, uint8(2), uint8(60), uint16(500))
	f.Fuzz(func(t *testing.T, ops []byte, limitByte, windowSec uint8, maxDelayMs uint16) {
		limit := int(limitByte % 6) // 0: off
		window := time.Duration(windowSec%120+1) * time.Second
		maxDelay := time.Duration(maxDelayMs%60000+1) * time.Millisecond
		now := time.Unix(1700000000, 0)
		b := newAuthBackoff(limit, window, maxDelay, func() time.Time { return now })

		hosts := []string{"192.0.2.1", "192.0.2.2", "2001:db8::1"}
		type model struct {
			inProgress int
			failures   []time.Time // every failure
			fast       []time.Time // failures answered without delay
		}
		m := map[string]*model{}
		for _, h := range hosts {
			m[h] = &model{}
		}
		steps := map[time.Duration]bool{}
		for i := 0; i <= 16; i++ {
			steps[min(100*time.Millisecond<<i, maxDelay)] = true
		}
		within := func(ts []time.Time, d time.Duration) int {
			n := 0
			for _, at := range ts {
				if now.Sub(at) <= d {
					n++
				}
			}
			return n
		}

		for i, op := range ops {
			host := hosts[int(op&0x3f)%len(hosts)]
			h := m[host]
			switch op >> 6 {
			case 0:
				h.inProgress++ // an authentication starts; nothing refuses it
			case 1, 2:
				if h.inProgress == 0 {
					continue // end only follows a begin
				}
				h.inProgress--
				success := op>>6 == 1
				d := b.end(host, success)
				if success {
					if d != 0 {
						t.Fatalf("op %d: a success was delayed %v", i, d)
					}
					break
				}
				h.failures = append(h.failures, now)
				switch {
				case d == 0:
					h.fast = append(h.fast, now)
					if limit > 0 && within(h.fast, window) > 2*limit {
						t.Fatalf("op %d: %s had %d failures without delay within %v (limit %d)", i, host, within(h.fast, window), window, limit)
					}
				case limit == 0:
					t.Fatalf("op %d: a disabled backoff delayed %v", i, d)
				case !steps[d]:
					t.Fatalf("op %d: delay %v is not a step of 100ms doubling up to %v", i, d, maxDelay)
				case within(h.failures, window) <= limit:
					t.Fatalf("op %d: %s delayed %v after %d failures within %v (limit %d)", i, host, d, within(h.failures, window), window, limit)
				}
			case 3:
				now = now.Add(window * time.Duration(op&0x3f) / 16)
			}

			// The records are of addresses that failed, and count no more
			// failures than they had.
			b.mu.Lock()
			if limit == 0 && len(b.addrs) > 0 {
				t.Fatalf("op %d: a disabled backoff keeps %d records", i, len(b.addrs))
			}
			for _, host := range hosts {
				rec, h := b.addrs[host], m[host]
				if rec != nil && (rec.count < 1 || rec.count > len(h.failures)) {
					t.Fatalf("op %d: %s's record %+v, after %d failures", i, host, *rec, len(h.failures))
				}
			}
			if len(b.addrs) > len(hosts) {
				t.Fatalf("op %d: %d records for %d addresses", i, len(b.addrs), len(hosts))
			}
			b.mu.Unlock()
		}
	})
}
