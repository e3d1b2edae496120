package pgwire

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"sort"

	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/scram"
	"github.com/dsqlgate/dsqlgate/internal/users"
)

// This file holds the users clients authenticate as. The users package
// reads and resolves them (the configuration's users with their secrets,
// and the users file); the table here is what authentication looks them
// up in, and how it answers a name it does not know.

// userEntry is one gateway user, ready for authentication. Immutable.
type userEntry struct {
	name      string
	auth      string // config.AuthSCRAM, AuthMD5 or AuthPassword
	verifier  scram.Verifier
	hasSCRAM  bool
	md5       string          // "md5" + hex(md5(password + name)), or ""
	databases map[string]bool // nil: every route
}

// userTable is the set of users in force. It is replaced whole on reload
// (an atomic pointer in Server), never changed in place.
type userTable struct {
	byName map[string]*userEntry
	// mockSecret keys what an unknown user is answered with (mock). It is
	// derived from the users' own secrets, so it is the same across
	// restarts and on every gateway with the same users (an unknown
	// user's answer must not change when a known user's does not, or the
	// answers would tell them apart) and unknowable without them.
	mockSecret []byte
	// sorted are the users by name: mock draws an unknown user's answer
	// from them.
	sorted []*userEntry
}

// mock is how an unknown user is answered: as the configured user that an
// HMAC of its name under mockSecret picks would be, with that user's
// method and SCRAM iteration count, and a salt of the same length derived
// from the name. So every unknown name always gets the same answer, and
// the answers are distributed over methods and counts as the real users
// are. The verifier's keys are zero: no exchange or password can pass it,
// after the same work as a real one.
func (t *userTable) mock(name string) (method string, v scram.Verifier) {
	method, v = config.AuthSCRAM, scram.Verifier{Iterations: scram.DefaultIterations}
	saltLen := scram.DefaultSaltLen
	if n := uint64(len(t.sorted)); n > 0 {
		like := t.sorted[binary.BigEndian.Uint64(t.mockMAC("method", 0, name))%n]
		method = like.auth
		if like.hasSCRAM && len(like.verifier.Salt) > 0 {
			v.Iterations, saltLen = like.verifier.Iterations, len(like.verifier.Salt)
		}
	}
	for i := 0; len(v.Salt) < saltLen; i++ {
		v.Salt = append(v.Salt, t.mockMAC("salt", i, name)...)
	}
	v.Salt = v.Salt[:saltLen]
	return method, v
}

// mockMAC is HMAC-SHA-256 under mockSecret of a purpose, a counter and an
// unknown user's name.
func (t *userTable) mockMAC(purpose string, i int, name string) []byte {
	mac := hmac.New(sha256.New, t.mockSecret)
	fmt.Fprintf(mac, "%s\x00%d\x00", purpose, i)
	mac.Write([]byte(name))
	return mac.Sum(nil)
}

// newUserTable builds the table of list, the users as the users package
// resolved them.
func newUserTable(list []users.User) *userTable {
	list = append([]users.User(nil), list...)
	t := &userTable{byName: make(map[string]*userEntry, len(list))}
	h := sha256.New()
	h.Write([]byte("dsqlgate mock verifier secret\x00"))
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	for i := range list {
		u := &list[i]
		e := &userEntry{name: u.Name, auth: u.Auth, md5: u.MD5}
		if u.Verifier != nil {
			e.verifier, e.hasSCRAM = *u.Verifier, true
			h.Write(u.Verifier.StoredKey[:])
		}
		h.Write([]byte(e.md5))
		if len(u.Databases) > 0 {
			e.databases = map[string]bool{}
			for _, db := range u.Databases {
				e.databases[db] = true
			}
		}
		t.byName[u.Name] = e
		t.sorted = append(t.sorted, e)
	}
	t.mockSecret = h.Sum(nil)
	return t
}

// md5Response is what a client sends for md5 authentication: "md5" +
// hex(md5(hex(md5(password + user)) + salt)), from the stored hash.
func md5Response(stored string, salt []byte) string {
	sum := md5.Sum(append([]byte(stored[3:]), salt...))
	return "md5" + hex.EncodeToString(sum[:])
}

// ReloadUsers re-reads the users file (if any) and puts the users of the
// configuration and the file in force for new connections. On error the
// users in force stay. Sessions already authenticated are not affected.
func (s *Server) ReloadUsers() error {
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	cfg := s.currentConfig()
	tbl, stamp, err := loadUsers(cfg)
	if err != nil {
		return err
	}
	s.users.Store(tbl)
	s.usersStamp.Store(&stamp)
	s.log.Info("users loaded", zap.Int("users", len(tbl.byName)), zap.String("users_file", cfg.UsersFile), zap.String("users_env", cfg.UsersEnv))
	return nil
}

// loadUsers builds the user table of cfg, reading its users file, and the
// secrets its users name in the environment, now.
func loadUsers(cfg *config.Config) (*userTable, users.Stamp, error) {
	list, stamp, err := users.Load(cfg, os.LookupEnv)
	if err != nil {
		return nil, stamp, err
	}
	return newUserTable(list), stamp, nil
}

// checkRoleNames checks that cfg's user_roles name users of tbl (see
// users.CheckNames), and admin.users too: at start-up and at a configuration reload, not
// when the users file alone changes.
func checkRoleNames(cfg *config.Config, tbl *userTable) error {
	return users.CheckNames(cfg, func(name string) bool { _, ok := tbl.byName[name]; return ok })
}

// watchUsersFile reloads the users file when it changes, until stop.
func (s *Server) watchUsersFile(stop <-chan struct{}) {
	users.Watch(stop, func() string { return s.currentConfig().UsersFile }, s.usersStamp.Load, func(st users.Stamp) {
		old := s.usersStamp.Load()
		if err := s.ReloadUsers(); err != nil {
			s.log.Warn("users file changed but could not be loaded; the previous users stay", zap.Error(err))
			// Not the same broken version every poll; but a reload that
			// committed meanwhile has put its own stamp in force, which
			// stays.
			s.usersMu.Lock()
			if s.usersStamp.Load() == old {
				s.usersStamp.Store(&st)
			}
			s.usersMu.Unlock()
		}
	})
}
