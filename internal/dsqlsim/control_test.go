package dsqlsim_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/dsqlsim"
)

func TestControlHandler(t *testing.T) {
	e := startEmulator(t, nil)
	h := e.ControlHandler()
	do := func(method, target string, wantStatus int, out any) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
		if rec.Code != wantStatus {
			t.Fatalf("%s %s = %d %s, want %d", method, target, rec.Code, rec.Body, wantStatus)
		}
		if out != nil {
			if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
				t.Fatalf("%s %s: decode %q: %v", method, target, rec.Body, err)
			}
		}
	}

	var sessions []dsqlsim.SessionInfo
	do("GET", "/sessions", http.StatusOK, &sessions)
	if len(sessions) != 0 {
		t.Fatalf("GET /sessions = %+v, want none", sessions)
	}

	conns := []any{e.connect(t, "app", "direct"), e.connect(t, "admin", "direct"), e.connect(t, "app", "postgres")}
	do("GET", "/sessions", http.StatusOK, &sessions)
	if len(sessions) != len(conns) || sessions[1].Role != "admin" || sessions[1].BackendPID == 0 {
		t.Fatalf("GET /sessions = %+v", sessions)
	}

	var killed struct{ Killed int }
	do("POST", "/kill?id="+strconv.FormatInt(sessions[0].ID, 10), http.StatusOK, &killed)
	if killed.Killed != 1 {
		t.Fatalf("POST /kill?id = %+v", killed)
	}
	do("POST", "/kill?older_than=1h", http.StatusOK, &killed)
	if killed.Killed != 0 {
		t.Fatalf("POST /kill?older_than=1h = %+v", killed)
	}
	do("POST", "/kill?all=1", http.StatusOK, &killed)
	if killed.Killed != 2 {
		t.Fatalf("POST /kill?all=1 = %+v", killed)
	}

	var stats dsqlsim.Stats
	do("GET", "/stats", http.StatusOK, &stats)
	if stats.Killed != 3 || stats.Authenticated != 3 {
		t.Fatalf("GET /stats = %+v", stats)
	}

	var duration struct {
		MaxConnDuration string `json:"max_conn_duration"`
	}
	do("POST", "/max-conn-duration?value=90s", http.StatusOK, &duration)
	if duration.MaxConnDuration != "1m30s" || e.MaxConnDurationForTest() != 90*time.Second {
		t.Fatalf("POST /max-conn-duration = %+v", duration)
	}

	for _, bad := range []struct{ method, target string }{
		{"POST", "/kill"},
		{"POST", "/kill?id=x"},
		{"POST", "/kill?older_than=soon"},
		{"POST", "/max-conn-duration?value=0s"},
	} {
		do(bad.method, bad.target, http.StatusBadRequest, nil)
	}
	do("GET", "/kill?all=1", http.StatusMethodNotAllowed, nil)
}
