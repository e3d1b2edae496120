//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// memoryResult is one idle-client test: a fresh server process holding
// clients idle, authenticated connections.
type memoryResult struct {
	target  string // "dsqlgate" or "pgbouncer"
	clients int
	// rssBefore is the resident memory after a warm-up (a few clients
	// that connected and left), rssAfter with every client connected.
	rssBefore, rssAfter int64
	// goBefore and goAfter are the gateway's Go runtime figures before and after
	// (nil for PgBouncer): go_goroutines, go_memstats_heap_inuse_bytes,
	// go_memstats_stack_inuse_bytes.
	goBefore, goAfter map[string]float64
	skipped           string // why the test did not run, if it did not
}

// perClient is the resident memory each client added, in bytes.
func (m memoryResult) perClient() float64 {
	return float64(m.rssAfter-m.rssBefore) / float64(m.clients)
}

// goPerClient is what each client added to a Go runtime figure.
func (m memoryResult) goPerClient(name string) float64 {
	return (m.goAfter[name] - m.goBefore[name]) / float64(m.clients)
}

// Go runtime figures read from the gateway's /metrics.
var goMetrics = []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes"}

// measureMemory runs each idle-client test on a fresh gateway (one
// transaction-mode route to the emulator) and a fresh PgBouncer, so that
// neither holds memory from the pgbench rounds.
func measureMemory(ctx context.Context, env *environment, sizes []int, logf func(string, ...any)) ([]memoryResult, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil, err
	}
	var out []memoryResult
	for _, n := range sizes {
		for _, target := range []string{"dsqlgate", "pgbouncer"} {
			if uint64(n)+1000 > lim.Cur {
				out = append(out, memoryResult{target: target, clients: n,
					skipped: fmt.Sprintf("the open file limit (%d) is too low for %d clients", lim.Cur, n)})
				continue
			}
			logf("memory: %s holding %d idle clients", target, n)
			m, err := measureIdleClients(ctx, env, target, n)
			if err != nil {
				return nil, fmt.Errorf("%s with %d clients: %w", target, n, err)
			}
			logf("memory: %s %d clients: %.0f bytes per client", target, n, m.perClient())
			out = append(out, m)
		}
	}
	return out, nil
}

func measureIdleClients(ctx context.Context, env *environment, target string, n int) (memoryResult, error) {
	m := memoryResult{target: target, clients: n}
	name := fmt.Sprintf("memory-%s-%d", target, n)
	var (
		p                      *process
		addr, metrics          string
		user, database, secret string
		err                    error
	)
	switch target {
	case "dsqlgate":
		p, addr, metrics, err = env.startGateway(ctx, env.dsqlgateBin, name, []gatewayRoute{
			{database: routeDSQLTx, kind: "dsql", mode: "transaction", size: env.poolSize},
		})
		user, database, secret = gatewayUser, routeDSQLTx, env.gatewayPassword
	case "pgbouncer":
		p, addr, err = env.startPgBouncer(ctx, name)
		user, database, secret = "postgres", "postgres", env.pg.Password
	}
	if err != nil {
		return m, err
	}
	defer env.stopProcess(p)
	keys := newSCRAMKeys(secret)

	// Warm up: the first clients make the server set up what it keeps
	// whatever the number of clients (an upstream, buffers, caches).
	warm, err := openClients(ctx, addr, user, database, keys, 10)
	closeClients(warm)
	if err != nil {
		return m, err
	}
	time.Sleep(time.Second)
	if m.rssBefore, err = p.rss(); err != nil {
		return m, err
	}
	if metrics != "" {
		if m.goBefore, err = scrapeGoMetrics(ctx, metrics); err != nil {
			return m, err
		}
	}

	clients, err := openClients(ctx, addr, user, database, keys, n)
	defer closeClients(clients)
	if err != nil {
		return m, err
	}
	time.Sleep(2 * time.Second) // let the server settle; the clients stay idle
	if m.rssAfter, err = p.rss(); err != nil {
		return m, err
	}
	if metrics != "" {
		if m.goAfter, err = scrapeGoMetrics(ctx, metrics); err != nil {
			return m, err
		}
	}
	return m, nil
}

// openClients opens n authenticated connections, 16 at a time. On error
// it returns the ones it opened with the first error.
func openClients(ctx context.Context, addr, user, database string, keys *scramKeys, n int) ([]*clientConn, error) {
	const workers = 16
	conns := make([]*clientConn, n)
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				c, err := dialClient(dctx, addr, user, database, keys)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				conns[i] = c
			}
		}()
	}
	var firstErr error
feed:
	for i := range n {
		select {
		case next <- i:
		case firstErr = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		select {
		case firstErr = <-errs:
		default:
		}
	}
	opened := conns[:0]
	for _, c := range conns {
		if c != nil {
			opened = append(opened, c)
		}
	}
	return opened, firstErr
}

func closeClients(cs []*clientConn) {
	for _, c := range cs {
		c.Close()
	}
}

// scrapeGoMetrics reads goMetrics from a Prometheus text page.
func scrapeGoMetrics(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !slices.Contains(goMetrics, name) {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			out[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	for _, name := range goMetrics {
		if _, ok := out[name]; !ok {
			return nil, fmt.Errorf("scrape %s: no %s", url, name)
		}
	}
	return out, nil
}
