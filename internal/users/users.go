// Package users reads, resolves and watches the gateway's credentials:
// the users clients log in as, and the passwords of kind postgres
// upstreams.
//
// A validated *config.Config says where each secret is: inline (verifier,
// md5), in an environment variable (verifier_env, password_env), or in the
// users file (users_file, PgBouncer's userlist.txt format). Load reads
// them, checks them and turns each user into what authentication needs: a
// parsed SCRAM verifier, an md5 hash, or both from a password. The
// configuration itself stays as written; nothing here changes it.
//
// Every problem is a *config.ValidationError placed as the configuration's
// own problems are (file and line, or the DSQLGATE_ variable, and the key),
// and no message shows a secret, or anything from a users file but its line
// (a malformed line can put the secret in the name field).
package users

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// LookupEnv returns the value of an environment variable and whether it is
// set, as os.LookupEnv does.
type LookupEnv func(name string) (string, bool)

// User is one gateway user as authentication needs it. Never log its
// secrets.
type User struct {
	Name string
	// Auth is the method the gateway asks for: config.AuthSCRAM,
	// config.AuthMD5 or config.AuthPassword.
	Auth string
	// Verifier is the SCRAM verifier, or nil for a user with only an md5
	// hash.
	Verifier *scram.Verifier
	// MD5 is "md5" + hex(md5(password + name)), or "".
	MD5 string
	// Databases are the routes the user may use; empty means every route.
	Databases []string
}

// AllowsDatabase reports whether u may connect to db, a route's database.
func (u *User) AllowsDatabase(db string) bool {
	return len(u.Databases) == 0 || slices.Contains(u.Databases, db)
}

// Load returns every user of cfg, a validated configuration: those of
// cfg.Users, their secrets read from env where verifier_env or
// password_env names a variable, followed by those of cfg.UsersFile, read
// now, and those the variable cfg.UsersEnv holds. It also returns the Stamp of the users file as read (zero when
// there is none), for noticing later changes.
//
// It checks what Validate cannot without reading anything: that each
// secret has the form of one, that the users file parses and names no
// user of cfg.Users, and that the file holds a user when cfg.Users is
// empty. That admin.users and user_roles name users is CheckNames'.
func Load(cfg *config.Config, env LookupEnv) ([]User, Stamp, error) {
	var (
		list     []User
		problems []config.Problem
		stamp    Stamp
	)
	byName := map[string]int{}
	for i := range cfg.Users {
		u := &cfg.Users[i]
		byName[u.Name] = i
		if r, ps := resolve(cfg, fmt.Sprintf("users[%d]", i), u, env); len(ps) > 0 {
			problems = append(problems, ps...)
		} else {
			list = append(list, r)
		}
	}
	fileLoaded := true
	var fileUsers []User
	if path := cfg.UsersFile; path != "" {
		var ps []config.Problem
		fileUsers, stamp, ps = loadFile(cfg, path, byName)
		problems = append(problems, ps...)
		list = append(list, fileUsers...)
		fileLoaded = len(ps) == 0
		if fileLoaded && len(cfg.Users) == 0 && cfg.UsersEnv == "" && len(fileUsers) == 0 {
			problems = append(problems, cfg.Problemf("users_file", "%s holds no user and users is empty: at least one user is required, clients log in as one of them", path))
		}
	}
	if name := cfg.UsersEnv; name != "" {
		envUsers, ps := loadEnvUsers(cfg, name, env, byName, fileUsers)
		problems = append(problems, ps...)
		list = append(list, envUsers...)
		if len(ps) == 0 && len(list) == 0 {
			problems = append(problems, cfg.Problemf("users_env", "%s holds no user, and neither users nor users_file holds one: at least one user is required, clients log in as one of them", name))
		}
	}
	if err := config.NewValidationError(problems); err != nil {
		return nil, stamp, err
	}
	return list, stamp, nil
}

// CheckNames checks that each of admin.users and each routes[].user_roles
// entry of cfg names a user known reports (one of the users Load
// returned): a misspelt user_roles name would leave the user it meant on
// the route's role, admin by default. Validate checks both when users is
// all there is; with users_file or users_env, a server checks them when
// it starts and at each configuration reload, but not when the users file
// alone changes: removing a user from the file must take effect (a reload
// refused would keep the user) even while admin.users or user_roles still
// names it.
func CheckNames(cfg *config.Config, known func(name string) bool) error {
	var problems []config.Problem
	if cfg.UsersFile != "" || cfg.UsersEnv != "" {
		for i, name := range cfg.Admin.Users {
			if name != "" && !known(name) {
				problems = append(problems, cfg.Problemf(fmt.Sprintf("admin.users[%d]", i), "%q is not a user in users, users_file or users_env: only the gateway's own users can open the admin console", name))
			}
		}
	}
	for i, r := range cfg.Routes {
		for _, name := range slices.Sorted(maps.Keys(r.UserRoles)) {
			if !known(name) {
				problems = append(problems, cfg.Problemf(fmt.Sprintf("routes[%d].user_roles.%s", i, name), "%q is not a user in users, users_file or users_env: each entry maps a gateway user to its DSQL role (a user without one logs in as the route's role)", name))
			}
		}
	}
	return config.NewValidationError(problems)
}

// loadEnvUsers reads the users held in the environment variable name
// (users_env), in the users file format: a secret an orchestrator injects
// (ECS from AWS Secrets Manager, a Kubernetes Secret). Problems are placed
// at users_env and, like a file's, quote nothing of the value but a line
// number. byName maps the names of cfg.Users to their index; fromFile are
// the users the users file gave, which the variable must not repeat.
func loadEnvUsers(cfg *config.Config, name string, env LookupEnv, byName map[string]int, fromFile []User) ([]User, []config.Problem) {
	value, why := lookup(env, name)
	if why != "" {
		return nil, []config.Problem{cfg.Problemf("users_env", "%s: it should hold users in the users_file format, one \"name\" \"SCRAM-SHA-256$...\" line each", why)}
	}
	envUsers, lines, err := parseUsersFile([]byte(value), "$"+name)
	if err != nil {
		if ve, ok := err.(*config.ValidationError); ok {
			ps := make([]config.Problem, len(ve.Problems))
			for i, p := range ve.Problems {
				ps[i] = cfg.Problemf("users_env", "%s", p.Error())
			}
			return nil, ps
		}
		return nil, []config.Problem{cfg.Problemf("users_env", "%v", err)}
	}
	inFile := map[string]bool{}
	for _, u := range fromFile {
		inFile[u.Name] = true
	}
	var problems []config.Problem
	list := make([]User, 0, len(envUsers))
	for i := range envUsers {
		u := &envUsers[i]
		where := ""
		if j, dup := byName[u.Name]; dup {
			where = fmt.Sprintf("users[%d]", j)
		} else if inFile[u.Name] {
			where = "users_file"
		}
		if where != "" {
			p := config.Problem{File: "$" + name, Line: lines[i], Message: fmt.Sprintf("this user is already defined in %s; define each user once", where)}
			problems = append(problems, cfg.Problemf("users_env", "%s", p.Error()))
			continue
		}
		r, _ := resolve(cfg, "users_env", u, nil) // checked as it was parsed
		list = append(list, r)
	}
	return list, problems
}

// loadFile reads the users file at path, placing each of its problems at
// users_file. byName maps the names of cfg.Users to their index.
func loadFile(cfg *config.Config, path string, byName map[string]int) ([]User, Stamp, []config.Problem) {
	// The stamp first: a change made while the file is read is noticed by
	// the next poll.
	stamp, err := StampOf(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the message names the path already
		}
		return nil, Stamp{}, []config.Problem{cfg.Problemf("users_file", "cannot read %s: %v", path, err)}
	}
	fileUsers, lines, err := readFile(path)
	if err != nil {
		if ve, ok := err.(*config.ValidationError); ok {
			ps := make([]config.Problem, len(ve.Problems))
			for i, p := range ve.Problems {
				ps[i] = cfg.Problemf("users_file", "%s", p.Error())
			}
			return nil, stamp, ps
		}
		return nil, stamp, []config.Problem{cfg.Problemf("users_file", "%v", err)}
	}
	var problems []config.Problem
	list := make([]User, 0, len(fileUsers))
	for i := range fileUsers {
		u := &fileUsers[i]
		if j, dup := byName[u.Name]; dup {
			// The message quotes no name from the file: users[j] says which.
			p := config.Problem{File: path, Line: lines[i], Message: fmt.Sprintf("this user is already defined in users[%d]; define each user once", j)}
			problems = append(problems, cfg.Problemf("users_file", "%s", p.Error()))
			continue
		}
		// The file's secrets were checked as it was parsed.
		r, _ := resolve(cfg, "users_file", u, nil)
		list = append(list, r)
	}
	return list, stamp, problems
}

// resolve reads and checks the secret of u, a user at key path p, and
// returns it ready for authentication. Validate has checked which of
// the secret's keys are set.
func resolve(cfg *config.Config, p string, u *config.User, env LookupEnv) (User, []config.Problem) {
	var problems []config.Problem
	bad := func(key, format string, args ...any) {
		problems = append(problems, cfg.Problemf(p+"."+key, format, args...))
	}
	r := User{Name: u.Name, Auth: u.ResolvedAuth(), MD5: u.MD5, Databases: u.Databases}
	var verifier string
	switch {
	case u.Verifier != "":
		verifier = strings.TrimSpace(u.Verifier)
		if why := checkVerifier(verifier); why != "" {
			bad("verifier", "not a SCRAM-SHA-256 verifier: %s", why)
		}
	case u.VerifierEnv != "":
		v, why := lookup(env, u.VerifierEnv)
		if why != "" {
			bad("verifier_env", "%s", why)
			break
		}
		verifier = strings.TrimSpace(v)
		if why := checkVerifier(verifier); why != "" {
			bad("verifier_env", "environment variable %s does not hold a SCRAM-SHA-256 verifier: %s", u.VerifierEnv, why)
		}
	case u.PasswordEnv != "":
		password, why := lookup(env, u.PasswordEnv)
		switch {
		case why != "":
			bad("password_env", "%s", why)
		case strings.HasPrefix(password, verifierPrefix):
			bad("password_env", "environment variable %s holds a SCRAM verifier, not a password: name it in verifier_env instead", u.PasswordEnv)
		case checkMD5(password) == "":
			bad("password_env", "environment variable %s holds an md5 hash, not a password: put the hash in md5 instead", u.PasswordEnv)
		default:
			v, md5 := fromPassword(password, u.Name)
			r.Verifier, r.MD5 = &v, md5
		}
	}
	if u.MD5 != "" {
		if why := checkMD5(u.MD5); why != "" {
			bad("md5", "not an md5 password hash: %s", why)
		}
	}
	if len(problems) > 0 {
		return User{}, problems
	}
	if verifier != "" {
		v, err := scram.ParseVerifier(verifier)
		if err != nil { // checkVerifier accepts what ParseVerifier does
			return User{}, []config.Problem{cfg.Problemf(p, "%v", err)}
		}
		r.Verifier = &v
	}
	return r, nil
}

// lookup returns the value of the environment variable name, or why there
// is none. It never puts the value in a message.
func lookup(env LookupEnv, name string) (value, why string) {
	v, ok := "", false
	if env != nil {
		v, ok = env(name)
	}
	switch {
	case !ok:
		return "", fmt.Sprintf("environment variable %s is not set", name)
	case v == "":
		return "", fmt.Sprintf("environment variable %s is empty", name)
	}
	return v, ""
}

// ResolveRoutes returns cfg with the password of each kind postgres route
// that names password_env read from env: a copy whose routes have that
// value as password and no password_env, which authbridge dials with. cfg
// itself is not changed. A route whose variable is unset or empty is a
// problem at its password_env.
func ResolveRoutes(cfg *config.Config, env LookupEnv) (*config.Config, error) {
	out := *cfg
	out.Routes = slices.Clone(cfg.Routes)
	var problems []config.Problem
	for i := range out.Routes {
		r := &out.Routes[i]
		if r.Kind != config.KindPostgres || r.PasswordEnv == "" {
			continue
		}
		v, why := lookup(env, r.PasswordEnv)
		if why != "" {
			problems = append(problems, cfg.Problemf(fmt.Sprintf("routes[%d].password_env", i), "%s", why))
			continue
		}
		r.Password, r.PasswordEnv = v, ""
	}
	if err := config.NewValidationError(problems); err != nil {
		return nil, err
	}
	return &out, nil
}
