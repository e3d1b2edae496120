package users

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dsqlgate/dsqlgate/config"
)

// ReadFile reads a users file in PgBouncer's userlist.txt format: one
// user per line,
//
//	"name" "secret"
//
// each field in double quotes, a double quote inside one written twice
// (""), the fields separated by spaces or tabs. Blank lines and lines
// starting with ';' or '#' are ignored. The secret is a SCRAM-SHA-256
// verifier, and that user gets Auth scram-sha-256, or an md5 hash as
// PostgreSQL stores it ("md5" + hex(md5(password + name))), and that user
// gets Auth md5. A plaintext password is refused. A name appears once.
//
// Load calls it for users_file. An unreadable file (it must be a regular file of at most 4 MiB) is
// an error wrapping the os error (errors.Is fs.ErrNotExist works); every
// problem with its content is a *ValidationError whose problems name path
// and the line, such as
//
//	users.txt:3: the secret is neither a SCRAM-SHA-256 verifier nor an md5 hash ...
//
// No error quotes anything from the file, not even a user name (in a
// malformed line the name field may hold the secret): the line says where.
func ReadFile(path string) ([]config.User, error) {
	users, _, err := readFile(path)
	return users, err
}

// readFile is ReadFile that also returns the line of each user.
func readFile(path string) ([]config.User, []int, error) {
	data, err := config.ReadSmallFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read users file %s: %w", path, err)
	}
	return parseUsersFile(data, path)
}

// userlistForm is the shape of a users file line, for messages.
const userlistForm = `a line is "name" "secret", each in double quotes`

// parseUsersFile parses the content of a users file; source names it in
// problems.
func parseUsersFile(data []byte, source string) ([]config.User, []int, error) {
	var (
		users    []config.User
		lines    []int
		problems []config.Problem
		byName   = map[string]int{} // user name → its line
	)
	bad := func(line int, format string, args ...any) {
		problems = append(problems, config.Problem{File: source, Line: line, Message: fmt.Sprintf(format, args...)})
	}
	// Messages name the line and never quote any of it, not even the user
	// name: in a malformed line such as "alice""secret" the name field
	// holds the secret.
	text := strings.TrimPrefix(string(data), "\uFEFF") // a byte order mark, as some editors write
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line = strings.TrimLeft(strings.TrimSuffix(line, "\r"), " \t")
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		name, rest, why := userlistField(line)
		if why != "" {
			bad(n, "the user name %s; %s", why, userlistForm)
			continue
		}
		switch {
		case name == "":
			bad(n, "empty user name")
			continue
		case strings.ContainsRune(name, 0):
			bad(n, "the user name must not contain a NUL character")
			continue
		case strings.TrimLeft(rest, " \t") == "":
			bad(n, "no secret after the user name; %s", userlistForm)
			continue
		case rest[0] != ' ' && rest[0] != '\t':
			bad(n, "expected a space after the user name; %s", userlistForm)
			continue
		}
		secret, rest, why := userlistField(strings.TrimLeft(rest, " \t"))
		switch {
		case why != "":
			bad(n, "the secret %s; %s", why, userlistForm)
			continue
		case strings.TrimRight(rest, " \t") != "":
			bad(n, "unexpected text after the secret; %s", userlistForm)
			continue
		}
		if first, dup := byName[name]; dup {
			bad(n, "this user is already defined at line %d", first)
			continue
		}
		byName[name] = n
		u := config.User{Name: name}
		switch {
		case secret == "":
			bad(n, "empty secret; store a SCRAM verifier, e.g. from `dsqlgate passwd NAME`")
			continue
		case strings.HasPrefix(secret, verifierPrefix):
			if why := checkVerifier(secret); why != "" {
				bad(n, "not a SCRAM-SHA-256 verifier: %s", why)
				continue
			}
			u.Verifier, u.Auth = secret, config.AuthSCRAM
		case strings.HasPrefix(secret, "md5") && len(secret) == len("md5")+32:
			if why := checkMD5(secret); why != "" {
				bad(n, "not an md5 password hash: %s", why)
				continue
			}
			u.MD5, u.Auth = secret, config.AuthMD5
		default:
			bad(n, "the secret is neither a SCRAM-SHA-256 verifier nor an md5 hash, so it looks like a plaintext password, which is refused: store a verifier, e.g. from `dsqlgate passwd NAME`")
			continue
		}
		users = append(users, u)
		lines = append(lines, n)
	}
	if err := config.NewValidationError(problems); err != nil {
		return nil, nil, err
	}
	return users, lines, nil
}

// userlistField reads the double-quoted field at the start of s, in which
// "" stands for one double quote, and returns its value and the rest of s.
// When s does not start with a whole quoted field, why says so (without
// quoting s).
func userlistField(s string) (value, rest, why string) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", "is not in double quotes"
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] != '"':
			b.WriteByte(s[i])
		case i+1 < len(s) && s[i+1] == '"':
			b.WriteByte('"')
			i++
		default:
			return b.String(), s[i+1:], ""
		}
	}
	return "", "", "has no closing double quote"
}

// Stamp identifies one version of a users file, for noticing that it
// changed: its size and modification time. The zero Stamp stands for no
// file.
type Stamp struct {
	size    int64
	modTime time.Time
}

// StampOf returns the Stamp of the file at path now.
func StampOf(path string) (Stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Stamp{}, err
	}
	return Stamp{size: fi.Size(), modTime: fi.ModTime()}, nil
}

// FilePoll is how often Watch checks the users file for changes.
const FilePoll = 2 * time.Second

// Watch polls the users file every FilePoll until stop is closed. At each
// poll, path names the file in force ("": none, nothing to do) and seen
// is the version last loaded or tried (nil: none); when the file's
// version is another, changed is called with it. Polling (rather than
// file-system notifications) works the same on every platform, and for
// files that a mounted secret replaces by renaming a directory.
func Watch(stop <-chan struct{}, path func() string, seen func() *Stamp, changed func(Stamp)) {
	t := time.NewTicker(FilePoll)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		p := path()
		if p == "" {
			continue
		}
		st, err := StampOf(p)
		if err != nil {
			continue // gone for now: the users in force stay
		}
		if old := seen(); old != nil && *old == st {
			continue
		}
		changed(st)
	}
}
