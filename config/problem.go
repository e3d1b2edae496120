package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// A Problem is one thing wrong with a configuration, placed as precisely as
// the input allows: at the environment variable that set the value, or else
// at the file and line. Message never holds a secret.
type Problem struct {
	// Flag is the command-line flag the problem is with, when the value
	// came from one (see Flag); File, Line and Env are then empty.
	Flag string
	// Env is the environment variable the problem is with, when the value
	// came from the environment (see ApplyEnv); File and Line are then
	// empty.
	Env string
	// File names the input as given to Load or Parse; empty for a Config
	// built in code and for a problem with an environment variable.
	File string
	// Line is the 1-based line of Key in File (of its nearest enclosing
	// key when Key itself is missing); 0 when unknown.
	Line int
	// Key is the key path, such as routes[0].pool.size; empty when the
	// problem is with the input as a whole.
	Key string
	// Message says what is wrong and, where it helps, what to write.
	Message string
}

// Error formats p as file:line: key: message, or as VARIABLE: key: message
// for a value from the environment, leaving out what is unknown.
func (p Problem) Error() string {
	var b strings.Builder
	switch {
	case p.Flag != "":
		b.WriteString(p.Flag + ": ")
	case p.Env != "":
		b.WriteString(p.Env + ": ")
	case p.File != "" && p.Line > 0:
		b.WriteString(p.File + ":" + strconv.Itoa(p.Line) + ": ")
	case p.File != "":
		b.WriteString(p.File + ": ")
	case p.Line > 0:
		b.WriteString("line " + strconv.Itoa(p.Line) + ": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ValidationError lists every problem found in one configuration: YAML
// syntax, unknown keys, wrong types and invalid values, and what the users
// package finds in the secrets it points at; or, from users.ReadFile, in
// one users file (problems without a Key).
type ValidationError struct {
	// Problems are ordered by line; problems without a line come first.
	Problems []Problem
}

// Error lists the problems, one per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// newValidationError returns nil when there is no problem, so that its
// result can be returned as an error directly.
func newValidationError(ps []Problem) error {
	if len(ps) == 0 {
		return nil
	}
	slices.SortStableFunc(ps, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
	return &ValidationError{Problems: ps}
}

// origin records where each key came from: the input's name, a map from
// key path (routes[0].pool.size, routes[0]) to the key's line, and the keys
// the environment set. Written only by Parse and ApplyEnv; read-only
// afterwards.
type origin struct {
	file  string
	lines map[string]int
	// env maps each key path ApplyEnv set (log.level, admin.users) to the
	// variable that set it (DSQLGATE_LOG_LEVEL).
	env map[string]string
	// flags maps each key path a Flag set (listen) to the flag (--listen).
	flags map[string]string
	// configEnv is the variable the document came from (LoadEnv), which
	// ApplyEnv leaves alone; "" for a file.
	configEnv string
	// warnings are what ApplyEnv ignored (Config.Warnings).
	warnings []Problem
}

// flag returns the flag that set key or the key enclosing it, or "". o
// may be nil.
func (o *origin) flag(key string) string {
	if o == nil {
		return ""
	}
	for ; key != ""; key = parentKey(key) {
		if name, ok := o.flags[key]; ok {
			return name
		}
	}
	return ""
}

// envVar returns the variable that set key or the key enclosing it
// (admin.users for admin.users[1]), or "". o may be nil.
func (o *origin) envVar(key string) string {
	if o == nil {
		return ""
	}
	for ; key != ""; key = parentKey(key) {
		if name, ok := o.env[key]; ok {
			return name
		}
	}
	return ""
}

// has reports whether the file or the environment set key itself. o may be
// nil.
func (o *origin) has(key string) bool {
	if o == nil {
		return false
	}
	_, inFile := o.lines[key]
	_, inEnv := o.env[key]
	_, inFlags := o.flags[key]
	return inFile || inEnv || inFlags
}

// line returns the line of key, or of its nearest enclosing key present in
// the input, or 0. o may be nil.
func (o *origin) line(key string) int {
	if o == nil {
		return 0
	}
	for key != "" {
		if l, ok := o.lines[key]; ok {
			return l
		}
		key = parentKey(key)
	}
	return 0
}

func (o *origin) fileName() string {
	if o == nil {
		return ""
	}
	return o.file
}

// parentKey returns the enclosing key path: routes[0].pool → routes[0] →
// routes → "".
func parentKey(key string) string {
	if strings.HasSuffix(key, "]") {
		if i := strings.LastIndexByte(key, '['); i >= 0 {
			return key[:i]
		}
	}
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[:i]
	}
	return ""
}

// joinKey appends name to the key path.
func joinKey(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
