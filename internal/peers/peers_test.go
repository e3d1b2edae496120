package peers_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/peers"
)

// resolver is a Lookup whose answers the test sets, counting its calls.
type resolver struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	fail    bool
	calls   int
}

func (r *resolver) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail {
		return nil, errors.New("server misbehaving")
	}
	a, ok := r.answers[host]
	if !ok {
		return nil, fmt.Errorf("no such host %s", host)
	}
	return a, nil
}

func (r *resolver) set(host string, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.answers == nil {
		r.answers = map[string][]netip.Addr{}
	}
	r.answers[host] = nil
	for _, a := range addrs {
		r.answers[host] = append(r.answers[host], netip.MustParseAddr(a))
	}
}

func (r *resolver) setFail(fail bool) {
	r.mu.Lock()
	r.fail = fail
	r.mu.Unlock()
}

func (r *resolver) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func tcpAddr(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

func newSet(t *testing.T, cfg config.Peers, listen string, opts peers.Options) *peers.Set {
	t.Helper()
	if cfg.Refresh == 0 {
		cfg.Refresh = config.Duration(time.Hour)
	}
	s, err := peers.New(context.Background(), cfg, tcpAddr(listen), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// all lists every peer address the set knows, by looking every
// identifier up.
func all(s *peers.Set) []string {
	var out []string
	for id := range uint16(1 << peers.IDBits) {
		out = append(out, s.Lookup(id)...)
	}
	slices.Sort(out)
	return out
}

func TestIDIsFNV1aLow13Bits(t *testing.T) {
	// FNV-1a 32 of "10.0.1.11:6432", computed independently, masked.
	const addr = "10.0.1.11:6432"
	h := uint32(2166136261)
	for _, c := range []byte(addr) {
		h ^= uint32(c)
		h *= 16777619
	}
	if got, want := peers.ID(addr), uint16(h&0x1fff); got != want {
		t.Fatalf("ID(%q) = %d, want %d", addr, got, want)
	}
	if peers.ID("10.0.1.11:6432") == peers.ID("10.0.1.12:6432") {
		t.Fatal("neighbouring addresses share an identifier (possible, but not for this pair)")
	}
}

func TestStaticAddressesExcludeSelf(t *testing.T) {
	s := newSet(t, config.Peers{Addresses: []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}, Self: "127.0.0.1:7001"}, "127.0.0.1:7001", peers.Options{})
	if s.Self() != "127.0.0.1:7001" || s.ID() != peers.ID("127.0.0.1:7001") {
		t.Fatalf("self %s id %d", s.Self(), s.ID())
	}
	if got := all(s); !slices.Equal(got, []string{"127.0.0.1:7002", "127.0.0.1:7003"}) {
		t.Fatalf("peers %v", got)
	}
	if s.Len() != 3 {
		t.Fatalf("Len %d, want 3 (self included)", s.Len())
	}
	if got := s.Lookup(peers.ID("127.0.0.1:7002")); !slices.Contains(got, "127.0.0.1:7002") {
		t.Fatalf("Lookup by 7002's id: %v", got)
	}
	if got := s.Lookup(s.ID()); slices.Contains(got, s.Self()) {
		t.Fatal("Lookup returned self")
	}
}

func TestSelfDetection(t *testing.T) {
	ifaces := func(addrs ...string) func() ([]net.Addr, error) {
		return func() ([]net.Addr, error) {
			var out []net.Addr
			for _, a := range addrs {
				_, n, err := net.ParseCIDR(a)
				if err != nil {
					t.Fatal(err)
				}
				ip, _, _ := net.ParseCIDR(a)
				out = append(out, &net.IPNet{IP: ip, Mask: n.Mask})
			}
			return out, nil
		}
	}
	base := config.Peers{Addresses: []string{"10.0.0.9:6432"}, Refresh: config.Duration(time.Hour)}
	tests := []struct {
		name, listen, self string
		ifaces             func() ([]net.Addr, error)
		want, err          string
	}{
		{name: "listen names one ip", listen: "10.0.0.5:6432", want: "10.0.0.5:6432"},
		{name: "self wins", listen: "10.0.0.5:6432", self: "10.0.0.7:7000", want: "10.0.0.7:7000"},
		{name: "self host name", listen: "0.0.0.0:6432", self: "me.internal:6432", want: "10.0.0.8:6432"},
		{name: "one interface address", listen: "0.0.0.0:6543", ifaces: ifaces("127.0.0.1/8", "10.1.2.3/24", "fe80::1/64", "::1/128"), want: "10.1.2.3:6543"},
		{name: "ambiguous", listen: "0.0.0.0:6432", ifaces: ifaces("10.1.2.3/24", "192.168.1.4/24"), err: "set peers.self"},
		{name: "no address", listen: "[::]:6432", ifaces: ifaces("127.0.0.1/8"), err: "set peers.self"},
		{name: "self name with two addresses", listen: "0.0.0.0:6432", self: "two.internal:6432", err: "names 2 addresses"},
	}
	r := &resolver{}
	r.set("me.internal", "10.0.0.8")
	r.set("two.internal", "10.0.0.8", "10.0.0.9")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.Self = tt.self
			s, err := peers.New(context.Background(), cfg, tcpAddr(tt.listen), peers.Options{Lookup: r.lookup, Interfaces: tt.ifaces})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Self() != tt.want {
				t.Fatalf("self %s, want %s", s.Self(), tt.want)
			}
		})
	}
}

// TestDNSRefreshKeepsLastAnswer checks the resolver path: the DNS name's
// answers become peers (with the name's port), a refresh follows a change,
// a failing lookup keeps the last answer, and a name in addresses resolves
// too.
func TestDNSRefreshKeepsLastAnswer(t *testing.T) {
	r := &resolver{}
	r.set("gw.svc", "10.0.0.1", "10.0.0.2", "10.0.0.3")
	r.set("static.internal", "10.0.9.9")
	var gauge sync.Map
	s := newSet(t, config.Peers{DNS: "gw.svc:6432", Addresses: []string{"static.internal:7000"}, Refresh: config.Duration(20 * time.Millisecond)},
		"10.0.0.1:6432", peers.Options{Lookup: r.lookup, OnChange: func(n int) { gauge.Store("n", n) }})
	if got := all(s); !slices.Equal(got, []string{"10.0.0.2:6432", "10.0.0.3:6432", "10.0.9.9:7000"}) {
		t.Fatalf("peers %v", got)
	}
	if n, _ := gauge.Load("n"); n != 4 {
		t.Fatalf("gauge %v, want 4", n)
	}

	r.set("gw.svc", "10.0.0.1", "10.0.0.4")
	waitFor(t, func() bool { return slices.Equal(all(s), []string{"10.0.0.4:6432", "10.0.9.9:7000"}) })

	r.setFail(true)
	calls := r.callCount()
	waitFor(t, func() bool { return r.callCount() >= calls+4 }) // two refreshes failed
	if got := all(s); !slices.Equal(got, []string{"10.0.0.4:6432", "10.0.9.9:7000"}) {
		t.Fatalf("after failed lookups: %v, want the last answer", got)
	}
	r.setFail(false)
	r.set("gw.svc", "10.0.0.5")
	waitFor(t, func() bool { return slices.Equal(all(s), []string{"10.0.0.5:6432", "10.0.9.9:7000"}) })
}

// TestUpdateFollowsReload checks that Update replaces the addresses at
// once and keeps self.
func TestUpdateFollowsReload(t *testing.T) {
	s := newSet(t, config.Peers{Addresses: []string{"127.0.0.1:7002"}, Self: "127.0.0.1:7001"}, "127.0.0.1:7001", peers.Options{})
	id := s.ID()
	s.Update(config.Peers{Addresses: []string{"127.0.0.1:7003", "127.0.0.1:7001"}, Refresh: config.Duration(time.Hour), Self: "127.0.0.1:9999"})
	waitFor(t, func() bool { return slices.Equal(all(s), []string{"127.0.0.1:7003"}) })
	if s.Self() != "127.0.0.1:7001" || s.ID() != id {
		t.Fatalf("self changed to %s", s.Self())
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
