//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// replacementResult is the cost of forced upstream replacements, seen by
// one session-mode client.
type replacementResult struct {
	method string // how the upstream was replaced
	wanted int    // replacements asked for
	// normalUs are the latencies (µs) of a query on a settled upstream,
	// firstUs of the first query after each replacement, addedUs the
	// difference within each pair.
	normalUs, firstUs, addedUs []float64
	// failed counts first queries that got an error, by SQLSTATE.
	failed map[string]int
	// notReplaced counts first queries that ran on the same backend as
	// before (the replacement did not happen).
	notReplaced int
}

// replaceGap is how long the client stays idle between the forced
// replacement and its next query. An upstream cut (DSQL's 60-minute
// limit, a network failure) comes while the client is idle; the gap lets
// the gateway see the cut before the query, as it will almost always have
// in production, so that the measurement is the replacement and not the
// race between the two.
const replaceGap = 10 * time.Millisecond

// measureReplacement measures n replacements of each kind on the
// gateway's session-mode route routeReplace: abrupt (the emulator cuts the
// client's upstream, as DSQL does at 60 minutes) and graceful (the admin
// console's RECONNECT, which retires the upstream at its next safe point).
// Each iteration times one query on the settled upstream and then the
// first query after the replacement, both `SELECT pg_backend_pid()`, whose
// answer shows that the backend did change.
//
// Each kind stops after n replacements or after budget, whichever comes
// first, so that a loaded machine cannot stretch the run without bound;
// the report shows how many ran.
func measureReplacement(ctx context.Context, env *environment, n int, budget time.Duration, logf func(string, ...any)) ([]replacementResult, error) {
	keys := newSCRAMKeys(env.gatewayPassword)
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client, err := dialClient(dctx, env.gatewayAddr, gatewayUser, routeReplace, keys)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	admin, err := dialClient(dctx, env.gatewayAddr, gatewayUser, "dsqlgate", keys)
	if err != nil {
		return nil, fmt.Errorf("admin console: %w", err)
	}
	defer admin.Close()
	if _, err := client.query("SELECT pg_backend_pid()"); err != nil {
		return nil, err
	}

	methods := []struct {
		name    string
		replace func(pid string) error
	}{
		{"abrupt: the emulator cuts the upstream (POST /kill?id=N)", func(pid string) error {
			return killBackend(ctx, env.controlURL, pid)
		}},
		{"graceful: admin console RECONNECT " + routeReplace, func(string) error {
			_, err := admin.query("RECONNECT " + routeReplace)
			return err
		}},
	}
	var out []replacementResult
	for _, m := range methods {
		logf("replacement: %d × %s", n, m.name)
		r := replacementResult{method: m.name, wanted: n, failed: map[string]int{}}
		deadline := time.Now().Add(budget)
		for range n {
			if time.Now().After(deadline) {
				logf("replacement: stopped after %s", budget)
				break
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			start := time.Now()
			pid, err := client.query("SELECT pg_backend_pid()")
			normal := time.Since(start)
			if err != nil {
				return nil, fmt.Errorf("query on a settled upstream: %w", err)
			}
			if err := m.replace(pid); err != nil {
				return nil, err
			}
			time.Sleep(replaceGap)
			start = time.Now()
			newPID, err := client.query("SELECT pg_backend_pid()")
			first := time.Since(start)
			var qerr *queryError
			switch {
			case errors.As(err, &qerr):
				r.failed[qerr.code]++
				continue
			case err != nil:
				return nil, fmt.Errorf("first query after a replacement: %w", err)
			case newPID == pid:
				r.notReplaced++
			}
			r.normalUs = append(r.normalUs, float64(normal.Microseconds()))
			r.firstUs = append(r.firstUs, float64(first.Microseconds()))
			r.addedUs = append(r.addedUs, float64((first - normal).Microseconds()))
		}
		if len(r.addedUs) == 0 {
			// Every first query failed; the report says so.
			logf("replacement: no replacement succeeded; %d failed", sumCounts(r.failed))
		} else {
			logf("replacement: added p50 %.2f ms, p99 %.2f ms; %d failed, %d not replaced",
				percentile(append([]float64(nil), r.addedUs...), 0.5)/1000, percentile(append([]float64(nil), r.addedUs...), 0.99)/1000,
				sumCounts(r.failed), r.notReplaced)
		}
		out = append(out, r)
	}
	return out, nil
}

// killBackend asks the emulator's control API to cut the session whose
// PostgreSQL backend has process id pid.
func killBackend(ctx context.Context, controlURL, pid string) error {
	want, err := strconv.ParseUint(pid, 10, 32)
	if err != nil {
		return fmt.Errorf("backend pid %q: %w", pid, err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, controlURL+"/sessions", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("list emulator sessions: %w", err)
	}
	var sessions []struct {
		ID         int64  `json:"id"`
		BackendPID uint32 `json:"backend_pid"`
	}
	err = json.NewDecoder(resp.Body).Decode(&sessions)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("list emulator sessions: %w", err)
	}
	for _, s := range sessions {
		if uint64(s.BackendPID) != want {
			continue
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/kill?id=%d", controlURL, s.ID), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("kill emulator session: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("kill emulator session: %s", resp.Status)
		}
		return nil
	}
	return fmt.Errorf("no emulator session has backend pid %d", want)
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
