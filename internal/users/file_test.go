package users_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/users"
)

// writeUsersFile writes content to users.txt in a new temporary directory
// and returns its path.
func writeUsersFile(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadFile(t *testing.T) {
	v := testVerifier
	scramUser := func(name string) config.User {
		return config.User{Name: name, Verifier: v, Auth: config.AuthSCRAM}
	}
	md5User := func(name string) config.User {
		return config.User{Name: name, MD5: testMD5, Auth: config.AuthMD5}
	}
	// A problem is wanted at line, with a message containing msg.
	type problem struct {
		line int
		msg  string
	}
	tests := []struct {
		name    string
		content string
		want    []config.User
		bad     []problem
	}{
		{name: "empty file", content: ""},
		{name: "only comments and blank lines", content: "; a comment\n\n# another\n   \n\t; indented\n"},
		{name: "one scram user", content: `"alice" "` + v + `"`, want: []config.User{scramUser("alice")}},
		{name: "one md5 user", content: `"alice" "` + testMD5 + `"` + "\n", want: []config.User{md5User("alice")}},
		{
			name:    "comments blank lines and users",
			content: "; users\n\n\"alice\" \"" + v + "\"\n# dave is old\n\"dave\" \"" + testMD5 + "\"\n\n",
			want:    []config.User{scramUser("alice"), md5User("dave")},
		},
		{name: "doubled quote in a name", content: `"o""brien" "` + v + `"`, want: []config.User{scramUser(`o"brien`)}},
		{name: "only a doubled quote", content: `"""" "` + v + `"`, want: []config.User{scramUser(`"`)}},
		{name: "spaces in a name", content: `"Jane Doe" "` + v + `"`, want: []config.User{scramUser("Jane Doe")}},
		{name: "tabs and trailing space", content: "\t\"alice\"\t \t\"" + v + "\"  \t\n", want: []config.User{scramUser("alice")}},
		{name: "crlf line ends", content: "; windows\r\n\"alice\" \"" + v + "\"\r\n\"bob\" \"" + v + "\"\r\n", want: []config.User{scramUser("alice"), scramUser("bob")}},
		{name: "byte order mark", content: "\uFEFF\"alice\" \"" + v + "\"\n", want: []config.User{scramUser("alice")}},
		{name: "no final newline", content: "\"alice\" \"" + v + "\"\n\"bob\" \"" + v + "\"", want: []config.User{scramUser("alice"), scramUser("bob")}},

		{name: "plaintext refused", content: "; x\n\"alice\" \"hunter2\"\n", bad: []problem{{2, `the secret is neither a SCRAM-SHA-256 verifier nor an md5 hash, so it looks like a plaintext password, which is refused: store a verifier, e.g. from ` + "`dsqlgate passwd NAME`"}}},
		{name: "plaintext starting with md5", content: `"alice" "md5hunter2"`, bad: []problem{{1, "looks like a plaintext password"}}},
		{name: "empty secret", content: `"alice" ""`, bad: []problem{{1, "empty secret"}}},
		{name: "bad verifier", content: `"alice" "SCRAM-SHA-256$4096:c2FsdA==$c2hvcnQ=:c2hvcnQ="`, bad: []problem{{1, "not a SCRAM-SHA-256 verifier: StoredKey must be 32 bytes"}}},
		{name: "non-canonical verifier", content: `"alice" "` + strings.Replace(v, "$4096:", "$+4096:", 1) + `"`, bad: []problem{{1, "iteration count"}}},
		{name: "md5 upper case", content: `"alice" "md5` + strings.ToUpper(testMD5[3:]) + `"`, bad: []problem{{1, "not an md5 password hash: the 32 digits after md5 must be lower-case hex"}}},
		{name: "name not quoted", content: "alice \"" + v + "\"\n", bad: []problem{{1, `the user name is not in double quotes; a line is "name" "secret"`}}},
		{name: "name not closed", content: "\n\"alice " + v + "\n", bad: []problem{{2, "the user name has no closing double quote"}}},
		{name: "secret not quoted", content: `"alice" ` + v, bad: []problem{{1, "the secret is not in double quotes"}}},
		{name: "secret not closed", content: `"alice" "` + v, bad: []problem{{1, "the secret has no closing double quote"}}},
		{name: "no secret", content: `"alice"` + "  \n", bad: []problem{{1, "no secret after the user name"}}},
		{name: "no space between fields", content: `"alice""` + v + `"`, bad: []problem{{1, "no secret after the user name"}}},
		{name: "fields run together", content: `"alice"x "` + v + `"`, bad: []problem{{1, "expected a space after the user name"}}},
		{name: "text after the secret", content: `"alice" "` + v + `" extra`, bad: []problem{{1, "unexpected text after the secret"}}},
		{name: "comment after the secret", content: `"alice" "` + v + `" ; note`, bad: []problem{{1, "unexpected text after the secret"}}},
		{name: "empty name", content: `"" "` + v + `"`, bad: []problem{{1, "empty user name"}}},
		{name: "nul in name", content: "\"a\x00b\" \"" + v + "\"", bad: []problem{{1, "must not contain a NUL character"}}},
		{name: "duplicate names", content: "\"alice\" \"" + v + "\"\n\"bob\" \"" + v + "\"\n\"alice\" \"" + testMD5 + "\"\n", bad: []problem{{3, "this user is already defined at line 1"}}},
		{
			name:    "every problem with its line",
			content: "; users\n\"alice\" \"hunter2\"\n\"bob\" \"" + v + "\"\nbob\n\n\"carol\" \"" + v + "\" x\n\"bob\" \"" + v + "\"\n",
			bad: []problem{
				{2, "plaintext"},
				{4, "the user name is not in double quotes"},
				{6, "unexpected text after the secret"},
				{7, "this user is already defined at line 3"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeUsersFile(t, tt.content)
			got, err := users.ReadFile(path)
			if tt.bad == nil {
				if err != nil {
					t.Fatalf("ReadFile: %v", err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("users mismatch (-want +got):\n%s", diff)
				}
				return
			}
			if got != nil {
				t.Errorf("ReadFile returned %d users with an error", len(got))
			}
			ps := asValidation(t, err)
			if len(ps) != len(tt.bad) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(tt.bad), err)
			}
			for i, p := range ps {
				want := config.Problem{File: path, Line: tt.bad[i].line, Message: p.Message}
				if diff := cmp.Diff(want, p); diff != "" {
					t.Errorf("problem %d mismatch (-want +got):\n%s", i, diff)
				}
				if !strings.Contains(p.Message, tt.bad[i].msg) {
					t.Errorf("problem %d: message %q does not contain %q", i, p.Message, tt.bad[i].msg)
				}
				if prefix := path + ":" + strconv.Itoa(tt.bad[i].line) + ": "; !strings.Contains(err.Error(), prefix) {
					t.Errorf("error does not name the file and line %q:\n%v", prefix, err)
				}
			}
		})
	}
}

// TestReadFileSample loads testdata/userlist.txt and checks its secrets
// against the made-up passwords its comments give.
func TestReadFileSample(t *testing.T) {
	list, _, err := users.Load(&config.Config{UsersFile: userlistPath}, nil)
	if err != nil {
		t.Fatalf("Load(users_file %s): %v", userlistPath, err)
	}
	var got []string
	for _, u := range list {
		got = append(got, u.Name+" "+u.Auth)
	}
	if diff := cmp.Diff([]string{"carol scram-sha-256", "dave md5", `o"brien scram-sha-256`}, got); diff != "" {
		t.Fatalf("users mismatch (-want +got):\n%s", diff)
	}
	for _, c := range []struct {
		i        int
		password string
	}{{0, "carol-password"}, {2, "obrien-password"}} {
		if v := list[c.i].Verifier; v == nil || !v.VerifyPassword(c.password) {
			t.Errorf("%s's verifier is not that of %q", list[c.i].Name, c.password)
		}
		if list[c.i].MD5 != "" {
			t.Errorf("%s has an md5 hash, want none", list[c.i].Name)
		}
	}
	if got, want := list[1].MD5, md5Of("dave-password", "dave"); got != want {
		t.Errorf("dave's md5 = %q, want %q", got, want)
	}
	if list[1].Verifier != nil {
		t.Errorf("dave has a SCRAM verifier, want none")
	}
}

func TestReadFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		is   error
		msg  string
	}{
		{name: "missing", path: filepath.Join(dir, "missing.txt"), is: fs.ErrNotExist, msg: "read users file " + filepath.Join(dir, "missing.txt") + ": no such file or directory"},
		{name: "directory", path: dir, msg: "it is a directory"},
		{name: "device", path: "/dev/zero", msg: "it is not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := users.ReadFile(tt.path)
			if err == nil {
				t.Fatal("ReadFile succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
		})
	}
}

// FuzzUsersFile checks that no users file panics, that every failure names
// a line of the file, and that every user loaded has a usable secret for
// its method.
func FuzzUsersFile(f *testing.F) {
	if sample, err := os.ReadFile(userlistPath); err == nil {
		f.Add(string(sample))
	}
	f.Add(`"a""b" "` + testVerifier + `"`)
	f.Add("\"a\" \"" + testMD5 + "\"\r\n; x\n\"a\" \"x\"")
	f.Add(`"""`)
	f.Add("\uFEFF\"\" \"\"")
	f.Fuzz(func(t *testing.T, content string) {
		path := writeUsersFile(t, content)
		list, _, err := users.Load(&config.Config{UsersFile: path}, nil)
		if err != nil {
			var ve *config.ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty *ValidationError", err, err)
			}
			lines := strings.Count(content, "\n") + 1
			for _, p := range ve.Problems {
				// Each is at users_file, quoting the file's own problem
				// with its line.
				if p.Key != "users_file" {
					t.Fatalf("problem not at users_file %#v", p)
				}
				if strings.HasPrefix(p.Message, path+" holds no user") {
					continue
				}
				rest, ok := strings.CutPrefix(p.Message, path+":")
				n, err := strconv.Atoi(strings.SplitN(rest, ":", 2)[0])
				if !ok || err != nil || n < 1 || n > lines {
					t.Fatalf("problem at no line of the file %#v", p)
				}
			}
			return
		}
		names := map[string]bool{}
		for _, u := range list {
			if u.Name == "" || names[u.Name] {
				t.Fatalf("empty or duplicate user name %q", u.Name)
			}
			names[u.Name] = true
			switch u.Auth {
			case config.AuthSCRAM:
				if u.Verifier == nil {
					t.Fatalf("user %q: no verifier", u.Name)
				}
			case config.AuthMD5:
				if len(u.MD5) != 35 {
					t.Fatalf("user %q: md5 hash of %d characters", u.Name, len(u.MD5))
				}
			default:
				t.Fatalf("user %q: auth %q", u.Name, u.Auth)
			}
		}
	})
}

// FuzzUsersFileSecret puts arbitrary text, with a marker inside, in the
// secret of a users file line and checks that no error ever shows it, even
// when the text breaks the line's quoting.
func FuzzUsersFileSecret(f *testing.F) {
	f.Add("SCRAM-SHA-256$4096:", "c2FsdA==$x:y")
	f.Add("md5", "0123456789abcdef0123456789abcde")
	f.Add(`" "`, `"`)
	f.Add("", `" extra`)
	f.Fuzz(func(t *testing.T, before, after string) {
		const mark = "Mk7Qz9Wp"
		path := writeUsersFile(t, `"alice" "`+before+mark+after+`"`+"\n")
		_, err := users.ReadFile(path)
		if err == nil {
			return // a verifier can hold the marker in its base64
		}
		if strings.Contains(err.Error(), mark) {
			t.Fatalf("error shows the secret: %v", err)
		}
	})
}
