// Package peers keeps the replicas of one gateway deployment (peers.*):
// this replica's own address and identifier, and the others' addresses
// grouped by identifier, so that a CancelRequest for a session of another
// replica can be forwarded to it.
//
// A replica's identifier is derived from its address alone, so every
// replica computes every other's without talking to it. The set of peers
// is the union of peers.addresses and the answers for peers.dns, looked up
// again every peers.refresh in the background: a lookup that fails keeps
// its last answer, and a lookup never runs on a cancel's path (Lookup
// reads a snapshot). A replica that leaves the answers stays a peer for
// KeepDeparted: orchestrators take a stopping replica out of DNS (ECS
// deregisters it from Cloud Map) while it still drains its sessions, whose
// cancels must still reach it.
package peers

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
)

// IDBits is the width of a replica identifier in a cancel key.
const IDBits = 13

// ID is the identifier of the replica whose canonical address is addr
// ("ip:port", as netip.AddrPort formats it): the low IDBits bits of the
// 32-bit FNV-1a hash of addr. Two replicas may share one (the forwarder
// sends to each; the secret decides).
func ID(addr string) uint16 {
	h := fnv.New32a()
	h.Write([]byte(addr))
	return uint16(h.Sum32() & (1<<IDBits - 1))
}

// KeepDeparted is how long an address stays a peer after the last answer
// that held it: past a load balancer's deregistration delay plus a drain
// (ECS: 30s + shutdown_timeout 30s). Forwarding to a replica that has gone
// costs a refused dial, or a dial that times out (pgwire then skips that
// address for a few seconds), bounded like any forward.
const KeepDeparted = 2 * time.Minute

// lookupTimeout bounds one name's lookup, so that a resolver that does
// not answer cannot stall the refresh of the others for long.
const lookupTimeout = 2 * time.Second

// Options are a Set's seams; the zero value is production's.
type Options struct {
	// Log receives lookups that fail and identifier collisions; nil: none.
	Log *zap.Logger
	// Lookup resolves a host name to its addresses. Nil: the system
	// resolver (net.DefaultResolver.LookupNetIP).
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// Interfaces lists this host's addresses, for finding this replica's
	// own. Nil: net.InterfaceAddrs.
	Interfaces func() ([]net.Addr, error)
	// OnChange is called with Len after each refresh (the peers gauge).
	OnChange func(n int)
	// Now is the clock that ages departed peers. Nil: time.Now.
	Now func() time.Time
}

// Set is the replicas one gateway knows. Safe for concurrent use; Lookup
// never blocks on a lookup.
type Set struct {
	self netip.AddrPort
	id   uint16
	opts Options

	mu   sync.Mutex
	cfg  config.Peers                 // guarded by mu; Self is never read from it
	last map[string][]netip.AddrPort  // a name's last good answer, by entry (host:port); guarded by mu
	seen map[netip.AddrPort]time.Time // when each peer was last in an answer; guarded by mu
	// warned are the peers whose identifier collision with this replica's
	// was logged; touched only by publish, which refreshes run one at a
	// time (New's, then the loop's).
	warned map[netip.AddrPort]bool

	view atomic.Pointer[view]
	wake chan struct{} // Update asks the loop for a refresh now
	stop chan struct{}
	done chan struct{}
}

// view is one refresh's outcome: the peers other than self, by identifier.
type view struct {
	byID map[uint16][]string
	n    int
}

// New builds the set for cfg (which must be Enabled and valid), with this
// replica listening on listen (the bound address: port 0 resolved), looks
// the names up once, and keeps refreshing them until Close. It fails when
// this replica's own address cannot be told (see Self).
func New(ctx context.Context, cfg config.Peers, listen net.Addr, opts Options) (*Set, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Lookup == nil {
		opts.Lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if opts.Interfaces == nil {
		opts.Interfaces = net.InterfaceAddrs
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Set{opts: opts, cfg: cfg, last: map[string][]netip.AddrPort{}, seen: map[netip.AddrPort]time.Time{}, warned: map[netip.AddrPort]bool{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	self, err := s.findSelf(ctx, cfg.Self, listen)
	if err != nil {
		return nil, err
	}
	s.self, s.id = self, ID(self.String())
	s.refresh(ctx)
	go s.loop()
	return s, nil
}

// findSelf is this replica's canonical address: peers.self (a host name
// must resolve to one address), else listen's address when it is one IP,
// else the one non-loopback, non-link-local address of this host with
// listen's port.
func (s *Set) findSelf(ctx context.Context, self string, listen net.Addr) (netip.AddrPort, error) {
	if self != "" {
		host, portText, err := net.SplitHostPort(self)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("peers.self %q: %w", self, err)
		}
		port, _ := strconv.ParseUint(portText, 10, 16)
		ips, err := s.resolve(ctx, host)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("peers.self %q: %w", self, err)
		}
		if len(ips) != 1 {
			return netip.AddrPort{}, fmt.Errorf("peers.self %q names %d addresses; give this replica's own IP address", self, len(ips))
		}
		return netip.AddrPortFrom(ips[0], uint16(port)), nil
	}
	tcp, ok := listen.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("listen address %v is not TCP; set peers.self", listen)
	}
	bound := tcp.AddrPort()
	if ip := bound.Addr().Unmap(); !ip.IsUnspecified() {
		return netip.AddrPortFrom(ip, bound.Port()), nil
	}
	addrs, err := s.opts.Interfaces()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("list this host's addresses to find peers.self: %w", err)
	}
	var found []netip.Addr
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if ip = ip.Unmap(); !ok || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() {
			continue
		}
		found = append(found, ip)
	}
	if len(found) != 1 {
		return netip.AddrPort{}, fmt.Errorf("listen %v is every interface and this host has %d addresses other than loopback (%v): set peers.self to the address the other replicas reach this one at", listen, len(found), found)
	}
	return netip.AddrPortFrom(found[0], bound.Port()), nil
}

// resolve returns host's addresses: host itself when it is an IP, else
// the lookup's answer.
func (s *Set) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	ips, err := s.opts.Lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, errors.New("the name has no address")
	}
	out := make([]netip.Addr, len(ips))
	for i, ip := range ips {
		out[i] = ip.Unmap()
	}
	return out, nil
}

// Self is this replica's canonical address ("ip:port").
func (s *Set) Self() string { return s.self.String() }

// ID is this replica's identifier.
func (s *Set) ID() uint16 { return s.id }

// Lookup returns the addresses of the peers whose identifier is id, this
// replica excluded (nil: none). It reads the last refresh's outcome and
// never waits. The caller must not modify the slice.
func (s *Set) Lookup(id uint16) []string {
	return s.view.Load().byID[id]
}

// Len is how many replicas the set knows, this one included (departed
// ones until KeepDeparted has passed).
func (s *Set) Len() int { return s.view.Load().n + 1 }

// Update follows a reload: new addresses, DNS name and refresh interval,
// looked up at once in the background. Self and the identifier stay as
// they are (they are in every live cancel key).
func (s *Set) Update(cfg config.Peers) {
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close stops the refreshes.
func (s *Set) Close() {
	close(s.stop)
	<-s.done
}

// loop refreshes the set every peers.refresh, or at once after Update.
func (s *Set) loop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		every := s.cfg.Refresh.D()
		s.mu.Unlock()
		t := time.NewTimer(every)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		case <-s.wake:
			t.Stop()
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-s.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		s.refresh(ctx)
		cancel()
	}
}

// refresh resolves every configured entry (a name whose lookup fails
// keeps its last answer), and publishes the peers other than self.
func (s *Set) refresh(ctx context.Context) {
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	entries := slices.Clone(cfg.Addresses)
	if cfg.DNS != "" {
		entries = append(entries, cfg.DNS)
	}
	answers := map[string][]netip.AddrPort{}
	for _, e := range entries {
		if _, done := answers[e]; done {
			continue
		}
		addrs, err := s.resolveEntry(ctx, e)
		if err != nil {
			s.mu.Lock()
			addrs = s.last[e]
			s.mu.Unlock()
			s.opts.Log.Warn("peer lookup failed; keeping its last answer", zap.String("peer", e), zap.Int("addresses", len(addrs)), zap.Error(err))
		}
		answers[e] = addrs
	}
	now := s.opts.Now()
	s.mu.Lock()
	s.last = answers // names no longer configured are forgotten
	for _, addrs := range answers {
		for _, a := range addrs {
			s.seen[a] = now
		}
	}
	current := make([]netip.AddrPort, 0, len(s.seen))
	for a, at := range s.seen {
		if now.Sub(at) > KeepDeparted {
			delete(s.seen, a)
			continue
		}
		current = append(current, a)
	}
	s.mu.Unlock()
	s.publish(current)
}

// resolveEntry resolves one host:port entry.
func (s *Set) resolveEntry(ctx context.Context, entry string) ([]netip.AddrPort, error) {
	host, portText, err := net.SplitHostPort(entry)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", portText, err)
	}
	ips, err := s.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]netip.AddrPort, len(ips))
	for i, ip := range ips {
		out[i] = netip.AddrPortFrom(ip, uint16(port))
	}
	return out, nil
}

// publish stores the peers, self excluded, by identifier.
func (s *Set) publish(peers []netip.AddrPort) {
	v := &view{byID: map[uint16][]string{}}
	for _, a := range peers {
		if a == s.self {
			continue
		}
		id := ID(a.String())
		if id == s.id && !s.warned[a] {
			s.warned[a] = true // once per peer, not once per refresh
			s.opts.Log.Warn("a peer has this replica's identifier: cancels for either are tried on both", zap.String("peer", a.String()), zap.String("self", s.self.String()))
		}
		v.byID[id] = append(v.byID[id], a.String())
		v.n++
	}
	for _, list := range v.byID {
		slices.Sort(list)
	}
	s.view.Store(v)
	if s.opts.OnChange != nil {
		s.opts.OnChange(v.n + 1)
	}
}
