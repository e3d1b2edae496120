package netio

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/selfsigned"
)

// pair returns a wrapped client connection and the server end of a real
// loopback TCP connection.
func pair(t testing.TB) (*Conn, *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	w, ok := Wrap(c).(*Conn)
	if !ok {
		t.Fatal("Wrap did not wrap a *net.TCPConn")
	}
	t.Cleanup(func() { w.Close(); s.Close() })
	return w, s.(*net.TCPConn)
}

func TestWrapLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("Wrap changed a net.Pipe connection")
	}
	if TCP(a) != nil {
		t.Fatal("TCP found a TCP connection under a pipe")
	}
	c, s := pair(t)
	if TCP(c) != c.TCPConn || TCP(s) != s {
		t.Fatal("TCP did not return the connection underneath")
	}
}

// TestRoundTrip moves data both ways, including writes larger than the
// socket buffers so that Write must wait for room and Read for data.
func TestRoundTrip(t *testing.T) {
	c, s := pair(t)
	big := make([]byte, 16<<20)
	rand.Read(big)
	var wg sync.WaitGroup
	wg.Add(1)
	var got []byte
	var readErr error
	go func() {
		defer wg.Done()
		got, readErr = io.ReadAll(s)
	}()
	n, err := c.Write(big)
	if err != nil || n != len(big) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(big))
	}
	c.CloseWrite()
	wg.Wait()
	if readErr != nil || !bytes.Equal(got, big) {
		t.Fatalf("the peer read %d bytes (%v), not the %d written", len(got), readErr, len(big))
	}

	// The other way, read slowly in small pieces until end of stream.
	go func() {
		s.Write(big)
		s.Close()
	}()
	var back bytes.Buffer
	buf := make([]byte, 1000)
	for {
		n, err := c.Read(buf)
		back.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(back.Bytes(), big) {
		t.Fatalf("read %d bytes, not the %d written", back.Len(), len(big))
	}
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after end of stream = %d, %v; want 0, EOF", n, err)
	}
	if n, err := c.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read of no bytes = %d, %v; want 0, nil", n, err)
	}
}

func TestDeadlines(t *testing.T) {
	c, s := pair(t)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline = %v; want a timeout", err)
	}
	// A deadline in the past fails at once, and clearing it reads again.
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read with a past deadline = %v; want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	s.Write([]byte("hello"))
	buf := make([]byte, 10)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}

	// A write that cannot finish (the peer never reads) ends at its
	// deadline with what it wrote. The deadline leaves a loaded machine
	// (CI under -race) time to write the socket buffers' worth first.
	c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Write(make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n == 0 || n >= 64<<20 {
		t.Fatalf("Write to a peer that does not read = %d, %v; want part of it and a timeout", n, err)
	}
}

func TestCloseWakesReader(t *testing.T) {
	c, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection = %v; want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake the reader")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write on a closed connection = %v; want net.ErrClosed", err)
	}
}

// TestReset: a peer that closes with unread data resets the connection;
// the error is the system's, inside a *net.OpError, as net reports it.
func TestReset(t *testing.T) {
	c, s := pair(t)
	c.Write([]byte("unread"))
	time.Sleep(20 * time.Millisecond)
	s.Close() // unread data: the kernel sends a reset
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = c.Read(make([]byte, 10))
	}
	var op *net.OpError
	if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &op) || op.Op != "read" {
		t.Fatalf("Read after a reset = %v; want ECONNRESET in a read OpError", err)
	}
	for i := 0; i < 100 && err != nil && !errors.Is(err, syscall.EPIPE); i++ {
		_, err = c.Write([]byte("more"))
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Write after a reset = %v; want EPIPE or ECONNRESET", err)
	}
}

// TestTLS runs a TLS session over a wrapped connection on both sides.
func TestTLS(t *testing.T) {
	pair0, err := selfsigned.Generate([]string{"localhost"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pair0.CertPEM, pair0.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(pair0.Cert)
	c, s := pair(t)
	server := tls.Server(Wrap(s), &tls.Config{Certificates: []tls.Certificate{cert}})
	client := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	go func() {
		io.Copy(server, server) // echo
		server.Close()
	}()
	msg := bytes.Repeat([]byte("dsqlgate "), 100000)
	go client.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo over TLS: %v", err)
	}
}

// TestNoAllocs: a read and a write on the relay's hot path allocate
// nothing, waits for data included.
func TestNoAllocs(t *testing.T) {
	c, s := pair(t)
	go io.Copy(s, s) // echo
	msg, buf := make([]byte, 64), make([]byte, 64)
	allocs := testing.AllocsPerRun(500, func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a round trip allocates %.1f times; want 0", allocs)
	}
}

// BenchmarkPingPong compares one small round trip on a wrapped connection
// with net's own (run with -benchtime and compare the two lines).
func BenchmarkPingPong(b *testing.B) {
	for _, wrapped := range []bool{false, true} {
		name := "net"
		if wrapped {
			name = "netio"
		}
		b.Run(name, func(b *testing.B) {
			c, s := pair(b)
			var conn net.Conn = c.TCPConn
			if wrapped {
				conn = c
			}
			go func() {
				buf := make([]byte, 64)
				for {
					n, err := s.Read(buf)
					if err != nil {
						return
					}
					s.Write(buf[:n])
				}
			}()
			msg := make([]byte, 64)
			buf := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := conn.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(conn, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
