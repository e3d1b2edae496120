package e2e

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// What a client can make the gateway do before it has authenticated:
// hold memory (TestPreloginMemory), lock out others
// (TestPreloginBackoffNoLockout), learn which users exist
// (TestPreloginUnknownUser).

// maximalStartup is a StartupMessage of exactly size bytes for the stack's
// user and database, filled with the parameters param gives (name and
// value for the i-th) while they fit, and one last parameter padded to the
// size.
func maximalStartup(size int, param func(i int) (name, value string)) []byte {
	b := binary.BigEndian.AppendUint32(nil, 3<<16)
	b = append(b, "user\x00"+harness.StackUser+"\x00database\x00"+harness.StackDatabase+"\x00"...)
	body := size - 4 // the length word comes first
	for i := 0; ; i++ {
		name, value := param(i)
		next := name + "\x00" + value + "\x00"
		if name == "" || len(b)+len(next)+1+3 > body { // room for the terminator and "z\0\0"
			break
		}
		b = append(b, next...)
	}
	pad := body - len(b) - 1 - 3
	b = append(b, "z\x00"+strings.Repeat("v", pad)+"\x00\x00"...)
	return lengthPrefixed(b)
}

// vmRSS is the resident set size of the test process (where the gateway
// runs), in bytes; 0 if unknown.
func vmRSS() int64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// waitAuthenticating waits until the gateway has no connection left in
// its startup phase (the client_connections{state="authenticating"}
// gauge), and fails t if that takes more than d.
func waitAuthenticating(t *testing.T, st *harness.Stack, d time.Duration) {
	t.Helper()
	const key = `dsqlgate_client_connections{state="authenticating"}`
	var n float64
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n = harness.Scrape(t, st.Gateway.OpsAddr)[key]; n == 0 {
			return
		}
	}
	t.Errorf("%v connections still in their startup phase after %v", n, d)
}

// TestPreloginMemory: 100 unauthenticated clients each send a maximal
// startup packet (max_startup_packet, 10000 bytes) of the shortest
// parameters there are, and 100 more a maximal one of a few long
// parameters, and then stall. What the gateway holds for them must stay
// small (it once built a map of every parameter: about 15 MB for one
// 1 MiB packet): the first are refused (FATAL 08P01, too many
// parameters), the others get their authentication request and wait. A
// normal login works meanwhile, and every connection is gone at the end.
func TestPreloginMemory(t *testing.T) {
	const (
		clients    = 100
		maxStartup = 10000
		maxGrowth  = 100 << 20 // for all of them
		maxPerConn = 64 << 10  // and heap per connection, client side included
	)
	st, err := harness.StartStack(testCtx(t, 2*time.Minute), harness.StackOptions{
		Gateway: func(c *config.Config) { c.Limits.MaxStartupPacket = maxStartup },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	normalLogin := func() {
		t.Helper()
		conn := connect(t, st, "sslmode=disable")
		var one int
		if err := conn.QueryRow(testCtx(t, 30*time.Second), "select 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("a normal login's query: %d, %v", one, err)
		}
		conn.Close(testCtx(t, 10*time.Second))
	}
	normalLogin() // the upstream pool is warm before the baseline

	short := maximalStartup(maxStartup, func(i int) (string, string) { return strconv.FormatInt(int64(i), 36), "" })
	long := maximalStartup(maxStartup, func(i int) (string, string) {
		if i >= 58 {
			return "", ""
		}
		return fmt.Sprintf("p%d", i), strings.Repeat("v", 160)
	})
	if len(short) != maxStartup || len(long) != maxStartup {
		t.Fatalf("packets of %d and %d bytes, want %d", len(short), len(long), maxStartup)
	}
	shortParams := strings.Count(string(short[8:]), "\x00") / 2

	baseline := goroutineBaseline()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rssBefore := vmRSS()

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	answer := func(i int, pkt []byte, refused bool) {
		defer wg.Done()
		conn, err := net.DialTimeout("tcp", st.Gateway.Addr, 5*time.Second)
		if err != nil {
			t.Error(err)
			return
		}
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		mu.Lock()
		conns = append(conns, conn)
		mu.Unlock()
		if _, err := conn.Write(pkt); err != nil {
			t.Errorf("client %d: %v", i, err)
			return
		}
		fe := pgproto3.NewFrontend(bufio.NewReader(conn), conn)
		msg, err := receive(fe)
		if refused {
			if er := asErrorResponse(err); er == nil || er.Severity != "FATAL" || er.Code != "08P01" || !strings.Contains(er.Message, "parameters") {
				t.Errorf("client %d with %d short parameters: got %T %v, want FATAL 08P01 about too many parameters", i, shortParams, msg, err)
			}
			return // the gateway closes; the client stalls anyway
		}
		if _, ok := msg.(*pgproto3.AuthenticationSASL); !ok {
			t.Errorf("client %d with long parameters: got %T %v, want AuthenticationSASL", i, msg, err)
		}
		// ... and stalls in the middle of authentication.
	}
	for i := range clients {
		wg.Add(2)
		go answer(i, short, true)
		go answer(clients+i, long, false)
	}
	wg.Wait()
	time.Sleep(200 * time.Millisecond) // the refused ones linger (up to a second), their parameters dropped
	normalLogin()

	runtime.GC()
	runtime.ReadMemStats(&after)
	rssAfter := vmRSS()
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	stack := int64(after.StackInuse) - int64(before.StackInuse)
	t.Logf("%d stalled clients (%d with %d-byte packets of %d short parameters, %d with 61 long ones): heap in use grew by %.1f MiB (%.1f KiB per client), stacks by %.1f MiB, RSS by %.1f MiB; %d goroutines (baseline %d)",
		2*clients, clients, maxStartup, shortParams, clients, float64(heap)/(1<<20), float64(heap)/(2*clients)/(1<<10), float64(stack)/(1<<20),
		float64(rssAfter-rssBefore)/(1<<20), runtime.NumGoroutine(), baseline)
	if heap+stack > maxGrowth || heap > 2*clients*maxPerConn {
		t.Errorf("the process holds %.1f MiB more heap and stacks for %d unauthenticated clients (heap %.1f KiB per client), want less than %d MiB and %d KiB",
			float64(heap+stack)/(1<<20), 2*clients, float64(heap)/(2*clients)/(1<<10), maxGrowth>>20, maxPerConn>>10)
	}

	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
	goroutinesSettle(t, baseline, 10*time.Second) // before scrape's keep-alive connection
	waitAuthenticating(t, st, 10*time.Second)
	if n := st.Gateway.Server.ActiveClients(); n != 0 {
		t.Errorf("%d clients still counted", n)
	}
}

// failLogin logs in to st as its user with a wrong password from
// 127.0.0.1, and returns how long the gateway took to refuse.
func failLogin(t *testing.T, st *harness.Stack) time.Duration {
	t.Helper()
	start := time.Now()
	_, err := login(dialRaw(t, st.Gateway.Addr), st.User, "wrong-"+st.Password, harness.StackDatabase)
	took := time.Since(start)
	if er := asErrorResponse(err); er == nil || er.Code != "28P01" {
		t.Fatalf("a wrong password: %v, want 28P01", err)
	}
	return took
}

// TestPreloginBackoffNoLockout: with the default auth_failure_* settings,
// 5 failed logins and 2 logins stalled in the middle of SCRAM from
// 127.0.0.1 must not keep the right password out (they did: 0 of 40 got
// in): failures are slowed down, not everybody. Then 10 correct logins
// all succeed promptly, and failures after them are delayed more and more,
// counted as clients (limits.max_client_conn) while they wait.
func TestPreloginBackoffNoLockout(t *testing.T) {
	st, err := harness.StartStack(testCtx(t, 2*time.Minute), harness.StackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, def := st.Gateway.Config().Limits, config.Default().Limits
	if l.AuthFailureLimit != def.AuthFailureLimit || l.AuthFailureWindow != def.AuthFailureWindow || l.AuthFailureMaxDelay != def.AuthFailureMaxDelay {
		t.Fatalf("the stack's auth_failure_* settings %d %v %v are not the defaults", l.AuthFailureLimit, l.AuthFailureWindow, l.AuthFailureMaxDelay)
	}

	var slowest time.Duration
	for i := range l.AuthFailureLimit {
		d := failLogin(t, st)
		slowest = max(slowest, d)
		t.Logf("failure %d answered after %v", i+1, d.Round(time.Millisecond))
	}
	for range 2 {
		fe, err := sendStartup(dialRaw(t, st.Gateway.Addr), map[string]string{"user": st.User, "database": harness.StackDatabase})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := beginSCRAM(fe, newSCRAMClient(st.Password, nil)); err != nil {
			t.Fatal(err)
		}
		// ... and stall, with the server-first message unanswered.
	}

	var slowestOK time.Duration
	for i := range 10 {
		start := time.Now()
		conn := dialRaw(t, st.Gateway.Addr)
		fe, err := login(conn, st.User, st.Password, harness.StackDatabase)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("correct login %d after failures: %v", i+1, err)
		}
		if took > 2*time.Second {
			t.Errorf("correct login %d took %v", i+1, took)
		}
		slowestOK = max(slowestOK, took)
		if rows, _, err := simpleQuery(fe, "select 1"); err != nil || len(rows) != 1 {
			t.Fatalf("correct login %d: select 1: %v %v", i+1, rows, err)
		}
		fe.Send(&pgproto3.Terminate{})
		fe.Flush()
		conn.Close()
	}

	t.Logf("10 correct logins after 5 failures and with 2 stalled: all in, the slowest in %v", slowestOK.Round(time.Millisecond))

	// Failures 6, 7 and 8 within the window: 100, 200 and 400 ms at least.
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		if i < 2 {
			d := failLogin(t, st)
			t.Logf("failure %d answered after %v", l.AuthFailureLimit+i+1, d.Round(time.Millisecond))
			if d < want || d < slowest {
				t.Errorf("failure %d answered after %v, want a delay of at least %v (failures before the limit: up to %v)", l.AuthFailureLimit+i+1, d, want, slowest)
			}
			continue
		}
		// The last one by hand, to look at the gateway while it waits.
		start := time.Now()
		conn := dialRaw(t, st.Gateway.Addr)
		fe, err := sendStartup(conn, map[string]string{"user": st.User, "database": harness.StackDatabase})
		if err != nil {
			t.Fatal(err)
		}
		sc := newSCRAMClient("wrong-"+st.Password, nil)
		serverFirst, err := beginSCRAM(fe, sc)
		if err != nil {
			t.Fatal(err)
		}
		final, err := sc.Final(serverFirst)
		if err != nil {
			t.Fatal(err)
		}
		fe.Send(&pgproto3.SASLResponse{Data: final})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(want / 2)
		counted := st.Gateway.Server.ActiveClients() // the 2 stalled, and this one
		er := refusal(t, fe)
		d := time.Since(start)
		t.Logf("failure %d answered after %v; %d clients counted while it waited", l.AuthFailureLimit+i+1, d.Round(time.Millisecond), counted)
		if er == nil || er.Code != "28P01" {
			t.Fatalf("a wrong password: %v, want 28P01", er)
		}
		if d < want || d < slowest {
			t.Errorf("failure %d answered after %v, want a delay of at least %v", l.AuthFailureLimit+i+1, d, want)
		}
		if counted < 1 {
			t.Errorf("a delayed failure is not counted as a client (max_client_conn): %d", counted)
		}
	}
}

// TestPreloginUnknownUser: an unknown user is answered as configured users
// are, over TLS on the security stack (users of every method): the
// authentication requests unknown names get come in the users'
// proportions; the same name gets the same request (for SCRAM the same
// salt and iteration count) every time; and with a wrong password an
// unknown name fails exactly as a real user of its method does (without
// TLS too, where cleartext is never asked for).
func TestPreloginUnknownUser(t *testing.T) {
	f := securityStack(t)
	tlsCfg := clientTLS(t, f.ClientCAFile)
	db := harness.StackDatabase

	want := map[string]float64{}
	for _, u := range f.users {
		want[u.Auth] += 1 / float64(len(f.users))
	}
	kindOf := func(msg pgproto3.BackendMessage) string {
		switch msg.(type) {
		case *pgproto3.AuthenticationSASL:
			return config.AuthSCRAM
		case *pgproto3.AuthenticationMD5Password:
			return config.AuthMD5
		case *pgproto3.AuthenticationCleartextPassword:
			return config.AuthPassword
		}
		return fmt.Sprintf("%T", msg)
	}
	// ask starts a login as user over TLS and returns the first
	// authentication request, and for SCRAM the salt and iteration count.
	ask := func(user string) (kind, saltIter string) {
		t.Helper()
		tc, err := negotiateTLS(dialRaw(t, f.Gateway.Addr), tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		fe, err := sendStartup(tc, map[string]string{"user": user, "database": db})
		if err != nil {
			t.Fatal(err)
		}
		msg, err := receive(fe)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		kind = kindOf(msg)
		if kind != config.AuthSCRAM {
			return kind, ""
		}
		sc := newSCRAMClient("guess", tc)
		fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: sc.Mechanism(), Data: sc.First()})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		cont, err := expect[*pgproto3.AuthenticationSASLContinue](fe)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		_, saltIter, _ = strings.Cut(string(cont.Data), ",s=")
		return kind, saltIter
	}

	const names = 300
	got := map[string]float64{}
	ghostOf := map[string]string{} // kind → an unknown name answered so
	for i := range names {
		name := fmt.Sprintf("ghost-%d", i)
		kind, saltIter := ask(name)
		got[kind] += 1.0 / names
		if ghostOf[kind] == "" {
			ghostOf[kind] = name
		}
		if i < 30 {
			if again, saltIter2 := ask(name); again != kind || saltIter2 != saltIter {
				t.Errorf("%s was asked %s %q, then %s %q", name, kind, saltIter, again, saltIter2)
			}
		}
	}
	t.Logf("unknown users were asked %v; the users' methods are %v", got, want)
	for kind, share := range got {
		if math.Abs(share-want[kind]) > 0.12 {
			t.Errorf("%.2f of unknown users were asked %s, %.2f of the users use it", share, kind, want[kind])
		}
	}

	// A wrong password for a real user and for an unknown one of the
	// same method: the same error, but for the name.
	same := func(how, real, ghost string, dial func() net.Conn) {
		t.Helper()
		_, realErr := login(dial(), real, "wrong", db)
		_, ghostErr := login(dial(), ghost, "wrong", db)
		r, g := asErrorResponse(realErr), asErrorResponse(ghostErr)
		if r == nil || g == nil {
			t.Fatalf("%s: %s %v, %s %v", how, real, realErr, ghost, ghostErr)
		}
		if g.Severity != r.Severity || g.Code != r.Code || g.Message != strings.ReplaceAll(r.Message, strconv.Quote(real), strconv.Quote(ghost)) ||
			g.Detail != r.Detail || g.Hint != r.Hint {
			t.Errorf("%s: %s failed with %s %s %q, %s with %s %s %q", how, real, r.Severity, r.Code, r.Message, ghost, g.Severity, g.Code, g.Message)
		}
	}
	overTLS := func() net.Conn {
		tc, err := negotiateTLS(dialRaw(t, f.Gateway.Addr), tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	plain := func() net.Conn { return dialRaw(t, f.Gateway.Addr) }
	for kind, real := range map[string]string{config.AuthSCRAM: f.User, config.AuthMD5: md5User, config.AuthPassword: clearUser} {
		ghost := ghostOf[kind]
		if ghost == "" {
			t.Errorf("no unknown name of %d was asked %s", names, kind)
			continue
		}
		same(kind+" over TLS", real, ghost, overTLS)
		same(kind+" without TLS", real, ghost, plain)
	}
}

// TestPreloginTerminateFirst: a client that connects and sends Terminate
// before any startup packet (node-postgres's connect() then end() at once)
// is closed without a word, as PostgreSQL does; an ErrorResponse there
// reached a client that no longer expected one and crashed it.
func TestPreloginTerminateFirst(t *testing.T) {
	f := securityStack(t)
	conn, err := net.DialTimeout("tcp", f.Gateway.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{'X', 0, 0, 0, 4}); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("the gateway did not close the connection: %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("the gateway answered a Terminate before startup with %q; PostgreSQL closes silently", got)
	}
}
