package pgwire

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/scram"
	"github.com/dsqlgate/dsqlgate/internal/scramclient"
	"github.com/dsqlgate/dsqlgate/internal/users"
)

func startupBody(pairs ...string) []byte {
	var b []byte
	for _, p := range pairs {
		b = append(b, p...)
		b = append(b, 0)
	}
	return append(b, 0)
}

func TestParseStartupMessage(t *testing.T) {
	cases := []struct {
		name     string
		version  uint32
		body     []byte
		want     *startupInfo
		wantCode string
	}{
		{"user and database", protocolVersion30, startupBody("user", "alice", "database", "app", "application_name", "psql"),
			&startupInfo{user: "alice", database: "app", params: map[string]string{"application_name": "psql"}}, ""},
		{"database defaults to user", protocolVersion30, startupBody("user", "bob"),
			&startupInfo{user: "bob", database: "bob", params: map[string]string{}}, ""},
		{"protocol 3.2 and options", 3<<16 | 2, startupBody("user", "u", "_pq_.test", "x"),
			&startupInfo{user: "u", database: "u", params: map[string]string{}, minor: 2, unknownProtocolOptions: []string{"_pq_.test"}}, ""},
		{"no user", protocolVersion30, startupBody("database", "x"), nil, pgerrcode.InvalidAuthorizationSpecification},
		{"protocol 2", 2 << 16, startupBody("user", "u"), nil, pgerrcode.FeatureNotSupported},
		{"protocol 4", 4 << 16, startupBody("user", "u"), nil, pgerrcode.FeatureNotSupported},
		{"no terminator", protocolVersion30, []byte("user\x00u\x00"), nil, pgerrcode.ProtocolViolation},
		{"name without value", protocolVersion30, []byte("user\x00u\x00database\x00"), nil, pgerrcode.ProtocolViolation},
		{"bytes after terminator", protocolVersion30, []byte("user\x00u\x00\x00junk"), nil, pgerrcode.ProtocolViolation},
		{"empty", protocolVersion30, nil, nil, pgerrcode.ProtocolViolation},
		{"replication", protocolVersion30, startupBody("user", "u", "replication", "database"), nil, pgerrcode.FeatureNotSupported},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStartupMessage(tc.version, tc.body)
			if tc.wantCode != "" {
				var pe *pgError
				if !errors.As(err, &pe) || pe.Code != tc.wantCode {
					t.Fatalf("err = %v, want SQLSTATE %s", err, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(startupInfo{})); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadStartupPacket(t *testing.T) {
	pkt := func(code uint32, rest []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(8+len(rest)))
		b = binary.BigEndian.AppendUint32(b, code)
		return append(b, rest...)
	}
	code, rest, err := readStartupPacket(bytes.NewReader(pkt(codeSSLRequest, nil)), 1024)
	if err != nil || code != codeSSLRequest || len(rest) != 0 {
		t.Fatalf("SSLRequest: %d %v %v", code, rest, err)
	}
	if _, _, err := readStartupPacket(bytes.NewReader(pkt(protocolVersion30, make([]byte, 2000))), 1024); !isCode(err, pgerrcode.ProtocolViolation) {
		t.Fatalf("oversize: %v", err)
	}
	if _, _, err := readStartupPacket(bytes.NewReader([]byte{0, 0, 0, 4, 0, 0, 0, 0}), 1024); !isCode(err, pgerrcode.ProtocolViolation) {
		t.Fatalf("length 4: %v", err)
	}
	if _, _, err := readStartupPacket(bytes.NewReader(nil), 1024); !errors.Is(err, errClientGone) {
		t.Fatalf("empty: %v", err)
	}
	// Terminate before the startup packet: the client left, nothing is
	// said (PostgreSQL closes silently).
	if _, _, err := readStartupPacket(bytes.NewReader([]byte{'X', 0, 0, 0, 4}), 10000); !errors.Is(err, errClientGone) {
		t.Fatalf("Terminate first: %v", err)
	}
}

func FuzzParseStartupMessage(f *testing.F) {
	f.Add(uint32(protocolVersion30), startupBody("user", "alice", "database", "app"))
	f.Add(uint32(3<<16|2), startupBody("user", "u", "_pq_.x", "1", "options", "-c search_path=a"))
	f.Add(uint32(protocolVersion30), []byte("user\x00"))
	f.Fuzz(func(t *testing.T, version uint32, body []byte) {
		info, err := parseStartupMessage(version, body)
		if err == nil && (info.user == "" || info.database == "") {
			t.Fatal("accepted a startup message without user or database")
		}
	})
}

// shortParameters is a StartupMessage body (after the version) of user and
// database and then as many distinct short parameters as fit in size
// bytes: the most map entries a packet of that size can ask for.
func shortParameters(size int) []byte {
	b := startupBody("user", "u", "database", "d")
	b = b[:len(b)-1] // the terminator comes last
	for i := 0; len(b)+8 < size; i++ {
		b = fmt.Appendf(b, "%x\x00\x00", i)
	}
	return append(b, 0)
}

// TestParseStartupMessageBounded: a StartupMessage may hold at most
// maxStartupParameters parameters, so that what an unauthenticated client
// makes the gateway allocate does not grow with the number it sends (a
// 1 MiB packet of short parameters cost about 15 MB as a map).
func TestParseStartupMessageBounded(t *testing.T) {
	pairs := []string{"user", "u", "database", "d", "_pq_.x", "1"}
	for i := len(pairs) / 2; i < maxStartupParameters; i++ {
		pairs = append(pairs, fmt.Sprintf("p%d", i), "v")
	}
	info, err := parseStartupMessage(protocolVersion30, startupBody(pairs...))
	if err != nil || len(info.params)+len(info.unknownProtocolOptions) != maxStartupParameters-2 {
		t.Fatalf("%d parameters: %v, %+v", maxStartupParameters, err, info)
	}
	pairs = append(pairs, "one", "more")
	_, err = parseStartupMessage(protocolVersion30, startupBody(pairs...))
	var pe *pgError
	if !errors.As(err, &pe) || pe.Severity != severityFatal || pe.Code != pgerrcode.ProtocolViolation || !strings.Contains(pe.Message, "more than 64 parameters") {
		t.Fatalf("%d parameters: %v, want FATAL 08P01 about too many parameters", maxStartupParameters+1, err)
	}

	body := shortParameters(1 << 20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = parseStartupMessage(protocolVersion30, body)
	runtime.ReadMemStats(&after)
	if !isCode(err, pgerrcode.ProtocolViolation) {
		t.Fatalf("1 MiB of short parameters: %v, want FATAL 08P01", err)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("parsing 1 MiB of short parameters allocated %d bytes", allocated)
	if allocated > 32<<10 {
		t.Fatalf("parsing 1 MiB of short parameters allocated %d KiB, want at most 32 KiB", allocated>>10)
	}
}

// TestReadStartupPacketOversize: a packet that announces more than the
// limit is refused from its 4-byte header, as PostgreSQL does ("invalid
// length of startup packet"), without reading (or buffering) any of it.
func TestReadStartupPacketOversize(t *testing.T) {
	pkt := startupPacket(protocolVersion30, shortParameters(20000))
	r := bytes.NewReader(pkt)
	_, _, err := readStartupPacket(r, 10000)
	var pe *pgError
	if !errors.As(err, &pe) || pe.Code != pgerrcode.ProtocolViolation || !strings.HasPrefix(pe.Message, "invalid length of startup packet") {
		t.Fatalf("oversize packet: %v", err)
	}
	if read := len(pkt) - r.Len(); read != 4 {
		t.Fatalf("read %d bytes of an oversize packet, want its length only", read)
	}
}

// userTableOf builds the user table of us as the server loads it.
func userTableOf(t testing.TB, us []config.User) *userTable {
	t.Helper()
	list, _, err := users.Load(&config.Config{Users: us}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return newUserTable(list)
}

// enumerationUsers are users of every method and of several SCRAM
// iteration counts, for the unknown-user tests: 8 users, so each kind of
// answer has a known share.
func enumerationUsers() []config.User {
	verifier := func(name string, iterations int) string {
		return scram.NewVerifier(fuzzPassword, fmt.Appendf(nil, "%-16s", "salt of "+name), iterations).Encode()
	}
	return []config.User{
		{Name: "s1", Verifier: verifier("s1", 4096)},
		{Name: "s2", Verifier: verifier("s2", 4096)},
		{Name: "s3", Verifier: verifier("s3", 4096)},
		{Name: "s4", Verifier: verifier("s4", 10000)},
		{Name: "m1", Auth: config.AuthMD5, MD5: md5Hash(fuzzPassword, "m1")},
		{Name: "m2", Auth: config.AuthMD5, MD5: md5Hash(fuzzPassword, "m2")},
		{Name: "c1", Auth: config.AuthPassword, Verifier: verifier("c1", 4096)},
		{Name: "c2", Auth: config.AuthPassword, Verifier: verifier("c2", 8192)},
	}
}

// answerKind is how a user is answered: the method, and for SCRAM (and
// cleartext, which is checked against a SCRAM verifier) the iteration
// count.
func answerKind(method string, v scram.Verifier) string {
	if method == config.AuthMD5 {
		return method
	}
	return fmt.Sprintf("%s/%d", method, v.Iterations)
}

// TestUnknownUserAnswers: an unknown user is answered like a configured
// one, drawn from the configured users: the methods and iteration counts
// come in the users' proportions, each name always gets the same answer
// and salt, and different names get different salts.
func TestUnknownUserAnswers(t *testing.T) {
	users := enumerationUsers()
	tbl := userTableOf(t, users)
	want := map[string]float64{}
	for _, u := range users {
		e := tbl.byName[u.Name]
		want[answerKind(e.auth, e.verifier)] += 1 / float64(len(users))
	}
	const names = 4000
	got := map[string]float64{}
	salts := map[string]bool{}
	for i := range names {
		name := fmt.Sprintf("ghost-%d", i)
		method, v := tbl.mock(name)
		again, v2 := tbl.mock(name)
		if method != again || v.Iterations != v2.Iterations || !bytes.Equal(v.Salt, v2.Salt) {
			t.Fatalf("%s answered %s %d %x, then %s %d %x", name, method, v.Iterations, v.Salt, again, v2.Iterations, v2.Salt)
		}
		if len(v.Salt) != scram.DefaultSaltLen || v.StoredKey != [32]byte{} || (i < 3 && v.VerifyPassword(fuzzPassword)) {
			t.Fatalf("%s's mock verifier %#v", name, v)
		}
		salts[string(v.Salt)] = true
		got[answerKind(method, v)] += 1.0 / names
	}
	if len(salts) != names {
		t.Errorf("%d distinct salts for %d names", len(salts), names)
	}
	for kind, share := range got {
		if math.Abs(share-want[kind]) > 0.03 {
			t.Errorf("unknown users answered %s: %.3f of them, configured users %.3f", kind, share, want[kind])
		}
	}
	t.Logf("unknown users' answers %v, configured users' %v", got, want)

	// Another secret (other users) picks other answers for the same
	// names, and no users at all leaves SCRAM with the default count.
	empty := userTableOf(t, nil)
	if method, v := empty.mock("ghost"); method != config.AuthSCRAM || v.Iterations != scram.DefaultIterations || len(v.Salt) != scram.DefaultSaltLen {
		t.Errorf("without users: %s %d %x", method, v.Iterations, v.Salt)
	}
}

// loginClient answers a server's authentication requests as a real client
// with password would, for user, and notes what it was asked.
type loginClient struct {
	user, password string
	requests       []uint32 // the Authentication codes received
	serverFirst    string   // SCRAM's server-first-message, if any
	sc             *scramclient.Client
}

// answer is the client's reply to one server message (nil: none).
func (c *loginClient) answer(msg []byte) []byte {
	if msg[0] != 'R' || len(msg) < 9 {
		return nil
	}
	code := binary.BigEndian.Uint32(msg[5:9])
	c.requests = append(c.requests, code)
	switch code {
	case 3: // AuthenticationCleartextPassword
		return message('p', append([]byte(c.password), 0))
	case 5: // AuthenticationMD5Password
		return message('p', append([]byte(md5Response(md5Hash(c.password, c.user), msg[9:13])), 0))
	case 10: // AuthenticationSASL
		c.sc = scramclient.New(c.password, nil)
		first := c.sc.First()
		return saslInitialResponse(scramclient.SCRAM, first, int32(len(first)))
	case 11: // AuthenticationSASLContinue
		c.serverFirst = string(msg[9:])
		final, err := c.sc.Final(msg[9:])
		if err != nil {
			return nil
		}
		return message('p', final)
	}
	return nil
}

// script is the client as a scriptConn script.
func (c *loginClient) script() func([]byte) []byte {
	answered := 0
	return func(written []byte) []byte {
		msgs := serverMessages(written)
		var out []byte
		for _, m := range msgs[answered:] {
			out = append(out, c.answer(m)...)
		}
		answered = len(msgs)
		return out
	}
}

// loginPlain runs authenticate for user with password on a plain
// connection.
func loginPlain(srv *Server, user, password string) (*loginClient, error) {
	c := &loginClient{user: user, password: password}
	conn := &scriptConn{respond: c.script()}
	_, err := srv.authenticate(conn, bufio.NewReader(conn), user, zap.NewNop())
	return c, err
}

// loginTLS runs authenticate for user with password over TLS (net.Pipe).
func loginTLS(t *testing.T, srv *Server, srvCfg, cliCfg *tls.Config, user, password string) (*loginClient, error) {
	t.Helper()
	cli, tc := mustHandshake(t, srvCfg, cliCfg)
	c := &loginClient{user: user, password: password}
	done := make(chan struct{})
	go func() {
		defer close(done)
		br := bufio.NewReader(cli)
		for {
			hdr, err := br.Peek(5)
			if err != nil {
				return
			}
			msg := make([]byte, 1+int(binary.BigEndian.Uint32(hdr[1:5])))
			if _, err := io.ReadFull(br, msg); err != nil {
				return
			}
			if out := c.answer(msg); out != nil {
				if _, err := cli.Write(out); err != nil {
					return
				}
			}
		}
	}()
	_, err := srv.authenticate(tc, bufio.NewReader(tc), user, zap.NewNop())
	tc.Close()
	<-done
	return c, err
}

// TestUnknownUserLikeWrongPassword: through authenticate, an unknown user
// that is answered like one of each kind of configured user is asked the
// same (the same salt and iteration count each time, for SCRAM), and fails
// with the same error as that user with a wrong password; cleartext is
// asked for over TLS only, as for a real cleartext user.
func TestUnknownUserLikeWrongPassword(t *testing.T) {
	tbl := userTableOf(t, enumerationUsers())
	srv := authServer()
	srv.users.Store(tbl)
	ca := newTestCA(t)
	certPEM, keyPEM := ca.issue(t, 1)
	store, _ := newTestCertStore(t, writeTestPair(t, certPEM, keyPEM), newFakeClock())
	srv.tls.Store(&serverTLS{certs: store})
	srvCfg := store.tlsConfig(false)

	// An unknown name answered like each kind of configured user.
	like := map[string]string{} // kind → unknown name
	for i := 0; len(like) < 5 && i < 10000; i++ {
		name := fmt.Sprintf("ghost-%d", i)
		if method, v := tbl.mock(name); like[answerKind(method, v)] == "" {
			like[answerKind(method, v)] = name
		}
	}
	for _, real := range []string{"s1", "s4", "m1", "c1", "c2"} {
		e := tbl.byName[real]
		kind := answerKind(e.auth, e.verifier)
		ghost := like[kind]
		if ghost == "" {
			t.Fatalf("no unknown name answered like %s (%s)", real, kind)
		}
		t.Run(real+" and "+ghost, func(t *testing.T) {
			login := func(user, password string) (*loginClient, error) {
				if e.auth == config.AuthPassword {
					return loginTLS(t, srv, srvCfg, clientConfig(ca), user, password)
				}
				return loginPlain(srv, user, password)
			}
			if _, err := login(real, fuzzPassword); err != nil {
				t.Fatalf("%s with the right password: %v", real, err)
			}
			wrong, wrongErr := login(real, "wrong")
			first, firstErr := login(ghost, "wrong")
			second, secondErr := login(ghost, "wrong")
			if !slices.Equal(wrong.requests, first.requests) || !slices.Equal(first.requests, second.requests) {
				t.Errorf("requests: %s %v, %s %v then %v", real, wrong.requests, ghost, first.requests, second.requests)
			}
			_, saltIter, _ := strings.Cut(first.serverFirst, ",s=")
			_, again, _ := strings.Cut(second.serverFirst, ",s=")
			_, realIter, _ := strings.Cut(wrong.serverFirst, ",i=")
			if saltIter != again || (e.auth == config.AuthSCRAM && !strings.HasSuffix(saltIter, ",i="+realIter)) {
				t.Errorf("%s's salt and iterations %q then %q; %s's iterations %q", ghost, saltIter, again, real, realIter)
			}
			want := strings.ReplaceAll(fmt.Sprint(wrongErr), strconv.Quote(real), strconv.Quote(ghost))
			if wrongErr == nil || fmt.Sprint(firstErr) != want || fmt.Sprint(secondErr) != want {
				t.Errorf("errors: %s with a wrong password %v; %s %v, %v", real, wrongErr, ghost, firstErr, secondErr)
			}
			if !isCode(firstErr, pgerrcode.InvalidPassword) {
				t.Errorf("%s failed with %v, want 28P01", ghost, firstErr)
			}
		})
	}

	// Without TLS, an unknown user answered like a cleartext user is
	// refused as that user is: cleartext is never asked for.
	for _, real := range []string{"c1", "c2"} {
		e := tbl.byName[real]
		ghost := like[answerKind(e.auth, e.verifier)]
		realC, realErr := loginPlain(srv, real, fuzzPassword)
		ghostC, ghostErr := loginPlain(srv, ghost, "wrong")
		if len(realC.requests)+len(ghostC.requests) != 0 || !isCode(realErr, pgerrcode.InvalidAuthorizationSpecification) || fmt.Sprint(realErr) != fmt.Sprint(ghostErr) {
			t.Errorf("without TLS: %s asked %v, %v; %s asked %v, %v", real, realC.requests, realErr, ghost, ghostC.requests, ghostErr)
		}
	}
}
