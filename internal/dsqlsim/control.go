package dsqlsim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// ControlHandler serves the control API described in the package comment:
// GET /sessions, GET /stats, POST /kill and POST /max-conn-duration. It has
// no authentication: serve it on loopback only.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sessions", func(w http.ResponseWriter, r *http.Request) {
		sessions := s.Sessions()
		if sessions == nil {
			sessions = []SessionInfo{}
		}
		writeJSON(w, http.StatusOK, sessions)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("POST /kill", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var killed int
		switch {
		case q.Has("id"):
			id, err := strconv.ParseInt(q.Get("id"), 10, 64)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, controlError{"id must be an integer"})
				return
			}
			if s.Kill(id) {
				killed = 1
			}
		case q.Get("all") == "1" || q.Get("all") == "true":
			killed = s.KillAll()
		case q.Has("older_than"):
			d, err := time.ParseDuration(q.Get("older_than"))
			if err != nil || d < 0 {
				writeJSON(w, http.StatusBadRequest, controlError{"older_than must be a duration such as 30s"})
				return
			}
			killed = s.KillOlderThan(d)
		default:
			writeJSON(w, http.StatusBadRequest, controlError{"give id=N, all=1 or older_than=DURATION"})
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Killed int `json:"killed"`
		}{killed})
	})
	mux.HandleFunc("POST /max-conn-duration", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("value"))
		if err != nil || d <= 0 {
			writeJSON(w, http.StatusBadRequest, controlError{"value must be a positive duration such as 90s"})
			return
		}
		s.SetMaxConnDuration(d)
		writeJSON(w, http.StatusOK, struct {
			MaxConnDuration string `json:"max_conn_duration"`
		}{d.String()})
	})
	return mux
}

type controlError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
