package config

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// ResolvedVerifier returns the user's SCRAM verifier: Verifier, or the one
// the last Validate read from VerifierEnv or made from PasswordEnv. It is
// empty for a user with only an md5 hash. Never log it.
func (u *User) ResolvedVerifier() string {
	if u.VerifierEnv != "" || u.PasswordEnv != "" {
		return u.verifier
	}
	return strings.TrimSpace(u.Verifier)
}

// ResolvedMD5 returns the user's md5 password hash, "md5" + hex(md5(password
// + name)): MD5, or the one the last Validate made from PasswordEnv; "" when
// the user has none. It is as good as the password for an md5 login: never
// log it.
func (u *User) ResolvedMD5() string {
	if u.PasswordEnv != "" {
		return u.md5
	}
	return u.MD5
}

// ResolvedAuth returns the authentication method the gateway asks this user
// for: Auth, or AuthSCRAM when it is empty.
func (u *User) ResolvedAuth() string {
	if u.Auth == "" {
		return AuthSCRAM
	}
	return u.Auth
}

// AllowsDatabase reports whether the user may connect to db, a route's
// Database: true for every db when Databases is empty.
func (u *User) AllowsDatabase(db string) bool {
	return len(u.Databases) == 0 || slices.Contains(u.Databases, db)
}

// AllUsers returns the users of c.Users followed by those of UsersFile as
// loaded by the last Validate, in a new slice the caller may keep. A server
// that reloads the file on its own calls LoadUsersFile instead.
func (c *Config) AllUsers() []User {
	return slices.Concat(c.Users, c.fileUsers)
}

// md5Hash is PostgreSQL's stored md5 password: "md5" + hex(md5(password +
// user)).
func md5Hash(password, user string) string {
	sum := md5.Sum([]byte(password + user))
	return "md5" + hex.EncodeToString(sum[:])
}

// checkUsers checks the users and loads users_file, and reports whether
// every user is known: false when users_file could not be loaded.
func (c *Config) checkUsers(k *checker) bool {
	routes := make([]string, 0, len(c.Routes))
	for _, r := range c.Routes {
		routes = append(routes, r.Database)
	}
	tlsMode := c.ClientTLSMode()
	byName := map[string]int{}
	for i := range c.Users {
		u := &c.Users[i]
		p := fmt.Sprintf("users[%d]", i)
		switch j, dup := byName[u.Name]; {
		case u.Name == "":
			k.add(p+".name", "required")
		case strings.ContainsRune(u.Name, 0):
			k.add(p+".name", "must not contain a NUL character")
		case dup:
			k.add(p+".name", "%q is already the name of users[%d]", u.Name, j)
		default:
			byName[u.Name] = i
		}
		u.check(k, p, tlsMode)
		if len(routes) == 0 {
			continue // "routes" already has a problem
		}
		for j, db := range u.Databases {
			if !slices.Contains(routes, db) {
				k.add(fmt.Sprintf("%s.databases[%d]", p, j), "%q is not the database of any route (routes: %s)", db, strings.Join(routes, ", "))
			}
		}
	}
	fileLoaded := c.checkUsersFile(k, byName)
	switch {
	case len(c.Users) > 0 || len(c.fileUsers) > 0 || !fileLoaded:
	case c.UsersFile == "":
		k.add("users", "at least one user is required (in users or users_file): clients log in as one of them")
	default:
		k.add("users_file", "%s holds no user and users is empty: at least one user is required, clients log in as one of them", c.UsersFile)
	}
	return fileLoaded
}

// checkUsersFile loads UsersFile into c.fileUsers, placing each of its
// problems at users_file, and reports whether it loaded. byName maps the
// names of c.Users to their index.
func (c *Config) checkUsersFile(k *checker, byName map[string]int) bool {
	c.fileUsers = nil
	if c.UsersFile == "" {
		return true
	}
	users, lines, err := loadUsersFile(c.UsersFile)
	var ve *ValidationError
	switch {
	case errors.As(err, &ve):
		for _, p := range ve.Problems {
			k.add("users_file", "%s", p.Error())
		}
		return false
	case err != nil:
		k.add("users_file", "%v", err)
		return false
	}
	ok := true
	for i, u := range users {
		if j, dup := byName[u.Name]; dup {
			// The message quotes no name from the file: users[j] says which.
			p := Problem{File: c.UsersFile, Line: lines[i], Message: fmt.Sprintf("this user is already defined in users[%d]; define each user once", j)}
			k.add("users_file", "%s", p.Error())
			ok = false
		}
	}
	if ok {
		c.fileUsers = users
	}
	return ok
}

// check checks one user at key path p, and resolves its secrets from the
// environment. tlsMode is the resolved client TLS mode.
func (u *User) check(k *checker, p, tlsMode string) {
	u.verifier, u.md5 = "", ""
	validAuth := true
	switch u.Auth {
	case "", AuthSCRAM, AuthMD5, AuthPassword:
	default:
		validAuth = false
		k.add(p+".auth", "%q is not one of %s, %s, %s (or leave it empty for %s)", u.Auth, AuthSCRAM, AuthMD5, AuthPassword, AuthSCRAM)
	}

	// The sources of the SCRAM verifier: at most one.
	var scramKeys []string
	for _, f := range []struct{ key, v string }{{"verifier", u.Verifier}, {"verifier_env", u.VerifierEnv}, {"password_env", u.PasswordEnv}} {
		if f.v != "" {
			scramKeys = append(scramKeys, f.key)
		}
	}
	switch len(scramKeys) {
	case 0:
	case 1:
		u.resolveSecret(k, p)
	case 2:
		k.add(p+"."+scramKeys[1], "set %s or %s, not both", scramKeys[0], scramKeys[1])
	default:
		k.add(p+".password_env", "set one of verifier, verifier_env and password_env, not all three")
	}
	switch {
	case u.MD5 != "" && u.PasswordEnv != "":
		k.add(p+".md5", "set md5 or password_env, not both: the md5 hash is made from password_env")
	case u.MD5 != "":
		if why := checkMD5(u.MD5); why != "" {
			k.add(p+".md5", "not an md5 password hash: %s", why)
		}
	}

	hasSCRAM, hasMD5 := len(scramKeys) > 0, u.MD5 != "" || u.PasswordEnv != ""
	auth := u.ResolvedAuth()
	switch {
	case !validAuth:
	case auth == AuthMD5 && hasMD5:
	case auth == AuthMD5 && hasSCRAM:
		k.add(p+".auth", "md5 needs md5 (the hash PostgreSQL stores, \"md5\" + hex(md5(password + name))) or password_env: a SCRAM verifier cannot check an md5 login")
	case auth == AuthMD5:
		k.add(p, "auth md5 needs md5 (the hash PostgreSQL stores) or password_env")
	case !hasSCRAM && u.MD5 != "":
		k.add(p+".auth", "%s needs verifier, verifier_env or password_env; a user with only md5 needs auth: md5", auth)
	case !hasSCRAM:
		k.add(p, "needs verifier, verifier_env or password_env: a SCRAM verifier (`dsqlgate passwd NAME` prints one), or the variable holding the password")
	case auth == AuthPassword && tlsMode == TLSDisable:
		k.add(p+".auth", "password sends the password in clear, so it needs client TLS, but client_tls.mode resolves to disable: set client_tls.cert_file and key_file (%s), or use %s", makeCertHint, AuthSCRAM)
	}
}

// resolveSecret checks the one source of the user's SCRAM verifier and,
// for verifier_env and password_env, reads the environment.
func (u *User) resolveSecret(k *checker, p string) {
	switch {
	case u.Verifier != "":
		if why := checkVerifier(strings.TrimSpace(u.Verifier)); why != "" {
			k.add(p+".verifier", "not a SCRAM-SHA-256 verifier: %s", why)
		}
	case u.VerifierEnv != "":
		v, ok := k.env(p+".verifier_env", u.VerifierEnv)
		if !ok {
			return
		}
		v = strings.TrimSpace(v)
		if why := checkVerifier(v); why != "" {
			k.add(p+".verifier_env", "environment variable %s does not hold a SCRAM-SHA-256 verifier: %s", u.VerifierEnv, why)
			return
		}
		u.verifier = v
	default:
		password, ok := k.env(p+".password_env", u.PasswordEnv)
		if !ok {
			return
		}
		switch {
		case strings.HasPrefix(password, verifierPrefix):
			k.add(p+".password_env", "environment variable %s holds a SCRAM verifier, not a password: name it in verifier_env instead", u.PasswordEnv)
			return
		case checkMD5(password) == "":
			k.add(p+".password_env", "environment variable %s holds an md5 hash, not a password: put the hash in md5 instead", u.PasswordEnv)
			return
		}
		// The salt is derived from the password and the name rather than
		// drawn at random, so the verifier is the same at every start: a
		// user whose salt changed on each restart (while an unknown user's
		// mock salt did not, or the reverse) could be told apart from an
		// unknown one. Without the password the salt cannot be predicted.
		mac := hmac.New(sha256.New, []byte(password))
		mac.Write([]byte("dsqlgate password_env salt\x00" + u.Name))
		salt := mac.Sum(nil)[:scram.DefaultSaltLen]
		v := scram.NewVerifier(password, salt, scram.DefaultIterations)
		u.verifier, u.md5 = v.Encode(), md5Hash(password, u.Name)
	}
}

const (
	verifierPrefix = "SCRAM-SHA-256$"
	// verifierForm is the shape of a SCRAM verifier, for messages.
	verifierForm = "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, as `dsqlgate passwd NAME` prints"
)

// checkVerifier checks the syntax of a SCRAM-SHA-256 verifier as pg_authid
// stores it and returns what is wrong, or "". It accepts exactly what
// scram.ParseVerifier accepts, so a verifier Validate passes is one the
// server can use. The reason never quotes any part of v.
func checkVerifier(v string) string {
	rest, ok := strings.CutPrefix(v, verifierPrefix)
	if !ok {
		return "it must start with SCRAM-SHA-256$ (store a verifier, never a password)"
	}
	iterSalt, keys, ok1 := strings.Cut(rest, "$")
	iter, salt, ok2 := strings.Cut(iterSalt, ":")
	storedKey, serverKey, ok3 := strings.Cut(keys, ":")
	if !ok1 || !ok2 || !ok3 {
		return "expected " + verifierForm
	}
	if n, err := strconv.ParseInt(iter, 10, 32); err != nil || n < 1 {
		return "the iteration count must be a whole number from 1 to 2147483647"
	}
	if b, err := base64.StdEncoding.DecodeString(salt); err != nil || len(b) == 0 {
		return "the salt must be non-empty base64"
	}
	if b, err := base64.StdEncoding.DecodeString(storedKey); err != nil || len(b) != 32 {
		return "StoredKey must be 32 bytes in base64"
	}
	if b, err := base64.StdEncoding.DecodeString(serverKey); err != nil || len(b) != 32 {
		return "ServerKey must be 32 bytes in base64"
	}
	// The finer points (canonical base64, no sign or leading zero in the
	// count): ParseVerifier's reasons never quote v either.
	if _, err := scram.ParseVerifier(v); err != nil {
		return strings.TrimPrefix(strings.TrimPrefix(err.Error(), scram.ErrInvalidVerifier.Error()), ": ")
	}
	return ""
}

// md5Form is the shape of an md5 password hash, for messages.
const md5Form = `expected "md5" and 32 lower-case hex digits: the md5 of the password followed by the user name, as PostgreSQL stores it (store the hash, never the password)`

// checkMD5 checks the syntax of an md5 password hash as pg_authid stores it
// and returns what is wrong, or "". The reason never quotes any part of s.
func checkMD5(s string) string {
	if strings.HasPrefix(s, verifierPrefix) {
		return "it is a SCRAM verifier: put it in verifier"
	}
	digits, ok := strings.CutPrefix(s, "md5")
	if !ok || len(digits) != 2*md5.Size {
		return md5Form
	}
	for i := range len(digits) {
		if c := digits[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "the 32 digits after md5 must be lower-case hex"
		}
	}
	return ""
}
