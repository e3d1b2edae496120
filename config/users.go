package config

import (
	"fmt"
	"slices"
	"strings"
)

// ResolvedAuth returns the authentication method the gateway asks this user
// for: Auth, or AuthSCRAM when it is empty.
func (u *User) ResolvedAuth() string {
	if u.Auth == "" {
		return AuthSCRAM
	}
	return u.Auth
}

// checkUsers checks the users. The users file is not read here: the users
// package reads it, with the secrets.
func (c *Config) checkUsers(k *checker) {
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
	if len(c.Users) == 0 && c.UsersFile == "" && c.UsersEnv == "" {
		k.add("users", "at least one user is required (in users, users_file or users_env): clients log in as one of them")
	}
}

// check checks one user at key path p: which of its secret's keys are set,
// and that they suit its method. The secrets themselves are the users
// package's to read and check. tlsMode is the resolved client TLS mode.
func (u *User) check(k *checker, p, tlsMode string) {
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
	case 0, 1:
	case 2:
		k.add(p+"."+scramKeys[1], "set %s or %s, not both", scramKeys[0], scramKeys[1])
	default:
		k.add(p+".password_env", "set one of verifier, verifier_env and password_env, not all three")
	}
	if u.MD5 != "" && u.PasswordEnv != "" {
		k.add(p+".md5", "set md5 or password_env, not both: the md5 hash is made from password_env")
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
