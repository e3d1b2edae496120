package pgwire

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/scram"
	"github.com/dsqlgate/dsqlgate/internal/users"
)

// TestReloadUsersFile: ReloadUsers puts the users file as it is now in
// force, with the users of the configuration, and records its stamp; a
// file that no longer loads leaves the users in force.
func TestReloadUsersFile(t *testing.T) {
	v := scram.NewVerifier("pw", []byte("salt-0123456789a"), 4096).Encode()
	path := filepath.Join(t.TempDir(), "users.txt")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv := &Server{log: zap.NewNop()}
	srv.conf.Store(&config.Config{Users: []config.User{{Name: "alice", Verifier: v}}, UsersFile: path})
	names := func() []string {
		var ns []string
		for name := range srv.users.Load().byName {
			ns = append(ns, name)
		}
		slices.Sort(ns)
		return ns
	}

	write(`"carol" "` + v + `"` + "\n")
	if err := srv.ReloadUsers(); err != nil {
		t.Fatalf("ReloadUsers: %v", err)
	}
	if got := names(); !slices.Equal(got, []string{"alice", "carol"}) {
		t.Errorf("users %q, want alice and carol", got)
	}
	if st, err := users.StampOf(path); err != nil || *srv.usersStamp.Load() != st {
		t.Errorf("the stamp in force is not the file's (%v)", err)
	}

	write(`"erin" "` + v + `"` + "\n")
	if err := srv.ReloadUsers(); err != nil {
		t.Fatalf("ReloadUsers: %v", err)
	}
	if got := names(); !slices.Equal(got, []string{"alice", "erin"}) {
		t.Errorf("users %q after the file changed, want alice and erin", got)
	}

	write(`"mallory" "hunter2"` + "\n")
	err := srv.ReloadUsers()
	if err == nil || !strings.Contains(err.Error(), "users_file: "+path+":1: ") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("ReloadUsers of a broken file: %v", err)
	}
	if got := names(); !slices.Equal(got, []string{"alice", "erin"}) {
		t.Errorf("users %q after a broken file, want alice and erin still", got)
	}
}
