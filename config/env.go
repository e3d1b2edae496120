package config

//go:generate go run ./internal/genref

import (
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts the name of every environment variable that overrides a
// configuration key.
const EnvPrefix = "DSQLGATE_"

// EnvVar returns the environment variable that overrides key, a key path
// such as log.level: EnvPrefix followed by the path in upper case with dots
// as underscores (DSQLGATE_LOG_LEVEL). Every key outside a list has one,
// derived from the yaml tags, so a new field gets its variable without
// more code. EnvVar returns "" for a key the environment cannot set: a
// mapping (log), a list of mappings (users, routes) and every key inside
// one (routes[0].pool.size).
func EnvVar(key string) string {
	if k, ok := envKeys().byPath[key]; ok {
		return k.name
	}
	return ""
}

// ApplyEnv sets the keys that environ, a list of NAME=value entries as
// os.Environ returns, overrides: for each variable named by EnvVar, the
// value is parsed as a YAML scalar of the key's type ("30s" for a duration,
// "1MiB" for a size, 100 for a number, true for a flag), except that text
// is taken exactly as written (an empty value sets an empty text) and a
// list of text is written with commas ("alice,bob"; empty for none).
// Parse and Load call it with os.Environ() after decoding the file and
// before validating, so the environment overrides the file; a server
// reloading its configuration normally calls Load again, and tests call
// ApplyEnv directly. It does not restore a key that an earlier ApplyEnv set
// and a later environ leaves out.
//
// Any other variable starting with EnvPrefix is ignored with a warning
// (Warnings) naming it, with a hint when it looks like a misspelt variable,
// unless a verifier_env, password_env or users_env key names it (such a
// variable holds a secret, which ApplyEnv never reads; one that is also an
// override variable is an error at that key), it holds the configuration
// itself (LoadEnv), or it has the shape of the variables Kubernetes
// injects for a Service whose name starts with dsqlgate (DSQLGATE_PORT=
// tcp://10.0.0.1:5432, DSQLGATE_SERVICE_HOST, ...), which are ignored
// without a word. An unknown variable is not an error: a deployment that
// sets one the running version does not know must still start. ApplyEnv returns nil or a *ValidationError whose problems name
// the variable (Problem.Env) and the key; a problem never shows the value
// of a secret key (none of the overridable keys is one today). A bad value
// leaves its key unchanged. ApplyEnv records which keys it set, so that
// Validate names the variable instead of a file line (see EnvOverrides).
//
// It must not run while other goroutines read c.
func (c *Config) ApplyEnv(environ []string) error {
	return newValidationError(c.applyEnv(environ))
}

// EnvOverrides returns the keys the environment set, as key path →
// variable ({"log.level": "DSQLGATE_LOG_LEVEL"}), in a new map the caller
// may keep; empty when no variable overrode a key.
func (c *Config) EnvOverrides() map[string]string {
	m := map[string]string{}
	if c.src != nil {
		maps.Copy(m, c.src.env)
	}
	return m
}

func (c *Config) applyEnv(environ []string) []Problem {
	if c.src == nil {
		c.src = &origin{lines: map[string]int{}}
	}
	if c.src.env == nil {
		c.src.env = map[string]string{}
	}
	keys := envKeys()
	secrets := c.secretEnvNames()
	var problems []Problem
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		k, known := keys.byName[name]
		secretKey, secret := secrets[name]
		switch {
		case known && secret:
			// Its value is a secret: never parse it as a setting, whose
			// problems could show it.
			problems = append(problems, Problem{
				File: c.src.fileName(), Line: c.src.line(secretKey), Key: secretKey,
				Message: fmt.Sprintf("%s overrides %s, so it cannot also hold a secret: name another variable", name, k.path),
			})
			continue
		case secret, name == c.src.configEnv:
			continue
		case known && isServiceLink(name, value):
			// A Service named dsqlgate-reuse injects DSQLGATE_REUSE_PORT=
			// tcp://host:port: an address, never a value of the key.
			c.src.warnings = append(c.src.warnings, Problem{Env: name, Message: fmt.Sprintf("holds a Kubernetes service link (proto://host:port), not a value of %s: ignored (rename the Service, or set enableServiceLinks: false in the pod)", k.path)})
			continue
		case !known:
			if !isServiceLink(name, value) {
				c.src.warnings = append(c.src.warnings, Problem{Env: name, Message: keys.unknown(name)})
			}
			continue
		}
		if p := c.setEnv(k, value); p != nil {
			problems = append(problems, *p)
		}
	}
	slices.SortStableFunc(problems, func(a, b Problem) int { return strings.Compare(a.Env, b.Env) })
	// A variable that holds a secret is no warning, even when the key that
	// names it (users_env) was itself set by the environment just now.
	after := c.secretEnvNames()
	c.src.warnings = slices.DeleteFunc(c.src.warnings, func(w Problem) bool { _, ok := after[w.Env]; return ok })
	slices.SortStableFunc(c.src.warnings, func(a, b Problem) int { return strings.Compare(a.Env, b.Env) })
	return problems
}

// Warnings returns what the configuration's sources hold that it ignored:
// DSQLGATE_ variables that override no key. Each names its variable and
// never shows a value. A server logs them at start-up and at each reload;
// check prints them.
func (c *Config) Warnings() []Problem {
	if c.src == nil {
		return nil
	}
	return slices.Clone(c.src.warnings)
}

// serviceLink matches what follows the Service's name in the variables
// Kubernetes injects into every pod for each Service of the namespace
// (enableServiceLinks), for Services named dsqlgate or dsqlgate-something:
// DSQLGATE_SERVICE_HOST, DSQLGATE_SERVICE_PORT, DSQLGATE_SERVICE_PORT_<PORT
// NAME>, DSQLGATE_PORT and DSQLGATE_PORT_<PORT>_<PROTOCOL>[_PROTO|_PORT|_ADDR].
// The submatch is set for the two that name a whole address.
var serviceLink = regexp.MustCompile(`_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT_[0-9]+_(?:TCP|UDP|SCTP)_(?:PROTO|PORT|ADDR)|(PORT|PORT_[0-9]+_(?:TCP|UDP|SCTP)))$`)

// isServiceLink reports whether name=value is a Kubernetes service link
// variable. The two that name a whole address (NAME_PORT and
// NAME_PORT_<PORT>_<PROTOCOL>) must also hold one, proto://host:port, so
// that a misspelt override ending in _PORT is still reported.
func isServiceLink(name, value string) bool {
	rest := strings.TrimPrefix(name, EnvPrefix[:len(EnvPrefix)-1])
	// Try each place the Service's name could end: DSQLGATE, DSQLGATE_X, ...
	for i := 0; i < len(rest); i++ {
		if rest[i] != '_' {
			continue
		}
		m := serviceLink.FindStringSubmatch(rest[i:])
		if m == nil || len(m[0]) != len(rest)-i {
			continue
		}
		if m[1] == "" {
			return true
		}
		scheme, _, ok := strings.Cut(value, "://")
		return ok && (scheme == "tcp" || scheme == "udp" || scheme == "sctp")
	}
	return false
}

// setEnv sets key k from value, the value of its variable, and records
// that the environment set it; or it leaves the key as it was and returns
// what is wrong. The problem never shows the value of a secret key
// (isSecretKey).
func (c *Config) setEnv(k envKey, value string) *Problem {
	v := reflect.ValueOf(c).Elem().FieldByIndex(k.index)
	if msg := parseEnvValue(value, k.path, v); msg != "" {
		if isSecretKey(k.path) {
			msg = fmt.Sprintf("expected %s, got a value that is not shown", describeType(k.typ))
		}
		return &Problem{Env: k.name, Key: k.path, Message: msg}
	}
	c.src.env[k.path] = k.name
	return nil
}

// parseEnvValue sets v, at key path, from the text of an environment
// variable, and returns what is wrong with text or "". A message may quote
// text; the caller hides it for a secret key.
func parseEnvValue(text, path string, v reflect.Value) string {
	if v.Kind() != reflect.Slice {
		return parseEnvScalar(text, path, v)
	}
	s := reflect.MakeSlice(v.Type(), 0, strings.Count(text, ",")+1)
	for item := range strings.SplitSeq(text, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		e := reflect.New(v.Type().Elem()).Elem()
		if msg := parseEnvScalar(item, fmt.Sprintf("%s[%d]", path, s.Len()), e); msg != "" {
			return msg
		}
		s = reflect.Append(s, e)
	}
	if s.Len() == 0 {
		v.SetZero() // as [] in the file
		return ""
	}
	v.Set(s)
	return ""
}

// parseEnvScalar sets v from text: text exactly as written, anything else
// decoded as the file's decoder decodes a plain scalar.
func parseEnvScalar(text, path string, v reflect.Value) string {
	if v.Kind() == reflect.String {
		v.SetString(text)
		return ""
	}
	if strings.TrimSpace(text) == "" {
		return fmt.Sprintf("is empty: set it to %s, or unset it to keep the value from the file", describeType(v.Type()))
	}
	d := &decoder{src: &origin{lines: map[string]int{}}, walking: map[*yaml.Node]bool{}}
	d.scalar(&yaml.Node{Kind: yaml.ScalarNode, Value: text}, path, v)
	if len(d.problems) > 0 {
		return d.problems[0].Message
	}
	return ""
}

// A Flag sets one key from the command line, over the file and the
// environment.
type Flag struct {
	// Name is the flag as written on the command line, such as --listen;
	// problems with the value name it.
	Name string
	// Key is the key path the flag sets, such as log.level. It must be a
	// key the environment can set (EnvVar returns a name for it).
	Key string
	// Value is the flag's value, read as an environment variable's
	// value is (see ApplyEnv).
	Value string
}

// applyFlags sets the keys of flags, in order, recording that each flag
// set its key.
func (c *Config) applyFlags(flags []Flag) []Problem {
	var problems []Problem
	for _, f := range flags {
		k, ok := envKeys().byPath[f.Key]
		if !ok {
			problems = append(problems, Problem{Flag: f.Name, Key: f.Key, Message: "sets no key the command line can set"})
			continue
		}
		v := reflect.ValueOf(c).Elem().FieldByIndex(k.index)
		if msg := parseEnvValue(f.Value, k.path, v); msg != "" {
			problems = append(problems, Problem{Flag: f.Name, Key: f.Key, Message: msg})
			continue
		}
		if c.src.flags == nil {
			c.src.flags = map[string]string{}
		}
		c.src.flags[k.path] = f.Name
	}
	return problems
}

// secretEnvNames maps each variable that a key ending in _env names
// (users[0].verifier_env, routes[1].password_env) to that key. Those
// variables hold secrets.
func (c *Config) secretEnvNames() map[string]string {
	names := map[string]string{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Struct:
			fs := yamlFields(v.Type())
			for _, name := range fs.names {
				f := v.Field(fs.index[name])
				key := joinKey(path, name)
				if f.Kind() == reflect.String && strings.HasSuffix(name, "_env") && f.String() != "" {
					if _, dup := names[f.String()]; !dup {
						names[f.String()] = key
					}
					continue
				}
				walk(f, key)
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return names
}

// envKey is a key the environment can set.
type envKey struct {
	name  string       // DSQLGATE_LOG_LEVEL
	path  string       // log.level
	index []int        // the field's index path within Config
	typ   reflect.Type // the field's type
}

// envTable lists the keys the environment can set.
type envTable struct {
	byName map[string]envKey
	byPath map[string]envKey
	names  []string // in the order of the fields
	// lists are the key paths of the lists of mappings (users, routes),
	// which the environment cannot set.
	lists []string
}

// envKeys derives the table from Config's yaml tags, once.
var envKeys = sync.OnceValue(func() *envTable {
	t := &envTable{byName: map[string]envKey{}, byPath: map[string]envKey{}}
	t.walk(reflect.TypeFor[Config](), "", nil)
	return t
})

func (t *envTable) walk(typ reflect.Type, path string, index []int) {
	fs := yamlFields(typ)
	for _, name := range fs.names {
		i := fs.index[name]
		f := typ.Field(i)
		key := joinKey(path, name)
		idx := append(slices.Clip(index), i)
		switch {
		case f.Type.Kind() == reflect.Struct:
			t.walk(f.Type, key, idx)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			t.lists = append(t.lists, key)
		default:
			k := envKey{name: envName(key), path: key, index: idx, typ: f.Type}
			if other, dup := t.byName[k.name]; dup {
				panic(fmt.Sprintf("config: keys %s and %s would share the environment variable %s", other.path, key, k.name))
			}
			t.byName[k.name], t.byPath[key] = k, k
			t.names = append(t.names, k.name)
		}
	}
}

// envName is the variable of key path: log.level → DSQLGATE_LOG_LEVEL.
func envName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// unknown says what is wrong with name, a variable starting with EnvPrefix
// that overrides no key, and what may have been meant. It never shows the
// variable's value.
func (t *envTable) unknown(name string) string {
	rest := strings.TrimPrefix(name, EnvPrefix)
	for _, list := range t.lists {
		up := strings.ToUpper(list)
		after, found := strings.CutPrefix(rest, up+"_")
		if rest == up || found && after != "" && after[0] >= '0' && after[0] <= '9' {
			return fmt.Sprintf("unknown variable: %s is a list of mappings, which the environment cannot set; write it in the configuration file", list)
		}
	}
	short := make([]string, len(t.names))
	for i, n := range t.names {
		short[i] = strings.TrimPrefix(n, EnvPrefix)
	}
	if best := closest(rest, short); best != "" {
		return fmt.Sprintf("unknown variable; did you mean %s%s?", EnvPrefix, best)
	}
	return "unknown variable: it overrides no key (docs/CONFIG.md lists the variables) and no verifier_env, password_env or users_env key names it"
}
