package dsqlsim

import (
	"sync"
	"time"
)

// tokenBucket is the new-connection rate limit: it holds up to burst tokens,
// refills at rate tokens per second on the injected clock, and each new
// connection takes one. It is safe for concurrent use.
type tokenBucket struct {
	rate  float64 // tokens per second
	burst float64 // bucket size, tokens

	mu     sync.Mutex // guards tokens and last
	tokens float64
	last   time.Time // when tokens was last brought up to date; zero before the first take
}

func newTokenBucket(rate float64, burst int) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// take takes one token at time now and reports whether there was one.
func (b *tokenBucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens += now.Sub(b.last).Seconds() * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
	}
	if b.last.IsZero() || now.After(b.last) {
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
