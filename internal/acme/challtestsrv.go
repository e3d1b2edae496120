package acme

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/libdns/libdns"
	"github.com/mholt/acmez/v3/acme"
)

// ChalltestsrvProvider is a libdns provider for pebble-challtestsrv, the
// DNS server Pebble (Let's Encrypt's ACME test server) validates DNS-01
// against in tests: it sets and clears TXT records through the server's
// management API (/set-txt, /clear-txt). It only appends and deletes TXT
// records.
type ChalltestsrvProvider struct {
	// URL is the management API, such as http://127.0.0.1:8055.
	URL    string
	Client *http.Client // nil: a client with a 10-second timeout
}

var (
	_ libdns.RecordAppender = (*ChalltestsrvProvider)(nil)
	_ libdns.RecordDeleter  = (*ChalltestsrvProvider)(nil)
)

// AppendRecords sets each TXT record in zone.
func (p *ChalltestsrvProvider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	for _, r := range recs {
		rr := r.RR()
		if rr.Type != "TXT" {
			return nil, fmt.Errorf("pebble-challtestsrv: only TXT records, not %s", rr.Type)
		}
		if err := p.post(ctx, "/set-txt", map[string]string{"host": libdns.AbsoluteName(rr.Name, zone), "value": rr.Data}); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// DeleteRecords clears the TXT records of each record's name in zone.
func (p *ChalltestsrvProvider) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	for _, r := range recs {
		rr := r.RR()
		if err := p.post(ctx, "/clear-txt", map[string]string{"host": libdns.AbsoluteName(rr.Name, zone)}); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// post sends body as JSON to the management API's path.
func (p *ChalltestsrvProvider) post(ctx context.Context, path string, body map[string]string) error {
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(p.URL, "/")+path, bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("pebble-challtestsrv: %w", err)
	}
	client := p.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("pebble-challtestsrv %s: %w", path, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pebble-challtestsrv %s: %s", path, resp.Status)
	}
	return nil
}

// zoneSolver solves DNS-01 through a libdns provider with the challenge's
// own name as the zone, so that no zone is looked up in DNS: for a test
// DNS server (pebble-challtestsrv answers no SOA queries), whose records
// are visible at once. It implements acmez.Solver.
type zoneSolver struct {
	provider interface {
		libdns.RecordAppender
		libdns.RecordDeleter
	}
}

// Present sets the challenge's TXT record.
func (s zoneSolver) Present(ctx context.Context, chal acme.Challenge) error {
	_, err := s.provider.AppendRecords(ctx, chal.DNS01TXTRecordName()+".", []libdns.Record{s.record(chal)})
	return err
}

// CleanUp clears it.
func (s zoneSolver) CleanUp(ctx context.Context, chal acme.Challenge) error {
	_, err := s.provider.DeleteRecords(ctx, chal.DNS01TXTRecordName()+".", []libdns.Record{s.record(chal)})
	return err
}

func (zoneSolver) record(chal acme.Challenge) libdns.RR {
	return libdns.RR{Type: "TXT", Name: "@", Data: chal.DNS01KeyAuthorization(), TTL: time.Minute}
}
