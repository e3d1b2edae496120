package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the YAML file at path and returns it parsed, with the
// environment and flags applied, and validated; see Parse. An unreadable
// file is an error wrapping the os error (errors.Is fs.ErrNotExist works);
// every problem with its content is a *ValidationError.
func Load(path string, flags ...Flag) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path, flags...)
}

// LoadEnv is Load for a configuration held in the environment variable
// name instead of a file: for containers that have neither a shell nor a
// volume to write one (ECS on Fargate takes the whole YAML document as a
// variable). Problems name the variable as their file ($NAME:3). ApplyEnv
// leaves that variable alone. An unset or empty variable is an error.
func LoadEnv(name string, flags ...Flag) (*Config, error) {
	data, ok := os.LookupEnv(name)
	if !ok || strings.TrimSpace(data) == "" {
		state := "is not set"
		if ok {
			state = "is empty"
		}
		return nil, fmt.Errorf("read config: environment variable %s %s: it should hold the whole YAML configuration (see examples/dsqlgate.yaml)", name, state)
	}
	return parse([]byte(data), "$"+name, name, flags)
}

// Parse decodes data, one YAML document, over Default, applies the
// environment's overrides (ApplyEnv with os.Environ()), then flags, and
// validates the result: each source overrides the ones before it,
// defaults < file < DSQLGATE_* variables < flags. Each route starts from
// DefaultRoute's settings for its kind, so a route that omits pool gets
// every pool default and one that sets only pool.size keeps the others. An
// empty key (`size:`) keeps its default. Anchors, aliases and merge keys
// (<<) work as in YAML.
//
// Validation sees only the result, so a flag may fix what the file alone
// gets wrong. Beyond Validate, Parse checks that the files the
// configuration names for TLS (the client certificate and key, each
// route's CA file) load.
//
// source names the input in messages, normally the file's path. All
// problems are reported together in a *ValidationError: unknown keys, wrong
// types, unknown or bad DSQLGATE_ variables and flags, and everything
// Validate finds; a YAML syntax error alone stops decoding.
func Parse(data []byte, source string, flags ...Flag) (*Config, error) {
	return parse(data, source, "", flags)
}

// parse is Parse for a document that came from the variable configEnv
// (LoadEnv), or from a file when configEnv is "".
func parse(data []byte, source, configEnv string, flags []Flag) (*Config, error) {
	c := Default()
	d := &decoder{src: &origin{file: source, lines: map[string]int{}, configEnv: configEnv}, walking: map[*yaml.Node]bool{}}
	root, p := parseDocument(data)
	if p != nil {
		p.File = source
		return nil, newValidationError([]Problem{*p})
	}
	if root != nil {
		d.value(root, "", reflect.ValueOf(c).Elem())
	}
	c.src = d.src
	problems := append(d.problems, c.applyEnv(os.Environ())...)
	problems = append(problems, c.applyFlags(flags)...)
	for _, p := range append(c.check(), c.checkFiles()...) {
		if !d.isBroken(p.Key) {
			problems = append(problems, p)
		}
	}
	if err := newValidationError(problems); err != nil {
		return nil, err
	}
	return c, nil
}

// parseDocument returns the root node of the only document in data, or nil
// for an empty document.
func parseDocument(data []byte) (*yaml.Node, *Problem) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxProblem(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxProblem(err)
	default:
		return nil, &Problem{Line: next.Line, Message: "a second YAML document (after ---); the configuration is one document"}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// yamlLine matches the "yaml: line N: " prefix of the parser's messages.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxProblem turns a YAML parser error into a Problem with its line.
// The parser's messages describe the syntax, never the values.
func syntaxProblem(err error) *Problem {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Problem{Line: line, Message: "invalid YAML: " + msg[len(m[0]):]}
	}
	return &Problem{Message: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// decoder walks a yaml.Node tree into a Config by reflection over the yaml
// struct tags. Unlike yaml.v3's own decoding it names the key path of every
// problem, reports every unknown key, refuses lossy conversions (1.5 into
// an int), never prints a secret, starts each route from its defaults and
// records the line of each key for Validate.
type decoder struct {
	src      *origin
	problems []Problem
	broken   []string // key paths whose value had the wrong shape or type
	// walking holds the mappings being decoded, to refuse an alias that
	// merges a mapping into itself (&a {<<: *a}), which YAML parses.
	walking map[*yaml.Node]bool
	// aliases counts alias expansions, which merges can nest to expand a
	// small file exponentially.
	aliases int
}

// maxAliases bounds alias expansions per document: far more than a
// hand-written configuration uses.
const maxAliases = 10000

// deref returns the node an alias refers to, or n itself. It returns nil
// once the document has expanded too many aliases.
func (d *decoder) deref(n *yaml.Node, path string) *yaml.Node {
	if n.Kind != yaml.AliasNode {
		return n
	}
	d.aliases++
	switch {
	case d.aliases == maxAliases+1:
		d.mistyped(n, path, "more than %d aliases expanded: the document refers to itself too often", maxAliases)
		return nil
	case d.aliases > maxAliases:
		return nil
	}
	return n.Alias
}

func (d *decoder) problem(line int, key, format string, args ...any) {
	d.problems = append(d.problems, Problem{File: d.src.file, Line: line, Key: key, Message: fmt.Sprintf(format, args...)})
}

// mistyped reports n, the value at key, as of the wrong shape or type, at
// the key's line (a block value starts on the line after its key).
// Validate's problems at or under key are then left out: they would only
// echo this one.
func (d *decoder) mistyped(n *yaml.Node, key, format string, args ...any) {
	line, ok := d.src.lines[key]
	if !ok {
		line = n.Line
	}
	d.problem(line, key, format, args...)
	d.broken = append(d.broken, key)
}

// isBroken reports whether key is at or under a mistyped key.
func (d *decoder) isBroken(key string) bool {
	for _, b := range d.broken {
		if b == "" || key == b || strings.HasPrefix(key, b+".") || strings.HasPrefix(key, b+"[") {
			return true
		}
	}
	return false
}

// value decodes n into v, which is settable, at key path path.
func (d *decoder) value(n *yaml.Node, path string, v reflect.Value) {
	if n = d.deref(n, path); n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty value keeps the default
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, path, v)
	case reflect.Slice:
		d.sequence(n, path, v)
	case reflect.Map:
		d.textMap(n, path, v)
	default:
		d.scalar(n, path, v)
	}
}

// textMap decodes a mapping of names to text (routes[].user_roles) into v,
// a map[string]string. Each key is a name of the input's own, not a
// configuration key: an entry's path is path.name. Merge keys work as
// for other mappings.
func (d *decoder) textMap(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.mistyped(n, path, "expected a mapping of names to text, got %s", describeNode(n, false))
		return
	}
	if len(n.Content) == 0 {
		v.SetZero() // {} is the same as leaving the key out
		return
	}
	m := reflect.MakeMap(v.Type())
	// walk adds n's entries: merged mappings first, so that the entries
	// written in n override them.
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if d.walking[n] {
			d.mistyped(n, path, "an alias refers to a mapping that contains it")
			return
		}
		d.walking[n] = true
		defer delete(d.walking, n)
		d.mergeKeys(n, path, walk)
		d.entries(n, path, true, func(k, val *yaml.Node, key string) {
			e := reflect.New(v.Type().Elem()).Elem()
			if val = d.deref(val, key); val != nil {
				d.scalar(val, key, e)
			}
			m.SetMapIndex(reflect.ValueOf(k.Value), e)
		})
	}
	walk(n)
	v.Set(m)
}

func (d *decoder) mapping(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		what := "expected a mapping of keys"
		if path == "" {
			what = "the file must be a mapping of keys such as listen: and routes:"
		}
		d.mistyped(n, path, "%s, got %s", what, describeNode(n, false))
		return
	}
	if d.walking[n] {
		d.mistyped(n, path, "an alias refers to a mapping that contains it")
		return
	}
	d.walking[n] = true
	defer delete(d.walking, n)
	fields := yamlFields(v.Type())
	// Merged mappings first, so that the keys written here override them.
	d.mergeKeys(n, path, func(m *yaml.Node) { d.mapping(m, path, v) })
	d.entries(n, path, false, func(k, val *yaml.Node, key string) {
		f, ok := fields.index[k.Value]
		if !ok {
			d.problem(k.Line, key, "unknown key%s", fields.hint(k.Value))
			return
		}
		d.value(val, key, v.Field(f))
	})
}

// isMergeKey reports whether k is YAML's merge key, <<.
func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge"
}

// entries calls f with each key of mapping n but the merge keys, its
// value and its key path, and records the key's line. It reports, and
// leaves out, a key that is not a plain name (empty too, when names: the
// keys are names of the input's own, as in user_roles) and a key written
// twice.
func (d *decoder) entries(n *yaml.Node, path string, names bool, f func(k, val *yaml.Node, key string)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if isMergeKey(k) {
			continue
		}
		if k.Kind != yaml.ScalarNode || names && k.Value == "" {
			d.problem(k.Line, path, "a key must be a plain name, got %s", describeNode(k, false))
			continue
		}
		key := joinKey(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.problem(k.Line, key, "set twice (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		d.src.lines[key] = k.Line
		f(k, val, key)
	}
}

// mergeKeys applies the value of each << key of mapping n through apply,
// once for each mapping it merges: a mapping, or a list of them, the first
// taking precedence (applied last).
func (d *decoder) mergeKeys(n *yaml.Node, path string, apply func(m *yaml.Node)) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !isMergeKey(n.Content[i]) {
			continue
		}
		v := d.deref(n.Content[i+1], path)
		if v == nil {
			continue
		}
		maps := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			maps = slices.Clone(v.Content)
			slices.Reverse(maps)
		}
		for _, m := range maps {
			if m = d.deref(m, path); m == nil {
				break
			}
			if m.Kind != yaml.MappingNode {
				d.mistyped(m, path, "<< must merge a mapping or a list of mappings, got %s", describeNode(m, false))
				continue
			}
			apply(m)
		}
	}
}

func (d *decoder) sequence(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.mistyped(n, path, "expected a list (lines starting with -), got %s", describeNode(n, false))
		return
	}
	if len(n.Content) == 0 {
		v.SetZero() // [] is the same as leaving the key out
		return
	}
	s := reflect.MakeSlice(v.Type(), 0, len(n.Content))
	for i, el := range n.Content {
		key := fmt.Sprintf("%s[%d]", path, i)
		d.src.lines[key] = el.Line
		e := reflect.New(v.Type().Elem()).Elem()
		r, isRoute := e.Addr().Interface().(*Route)
		if isRoute {
			*r = baseRoute()
		}
		d.value(el, key, e)
		if isRoute {
			_, occRetrySet := d.src.lines[key+".occ_retry.enabled"]
			r.fillKindDefaults(occRetrySet)
		}
		s = reflect.Append(s, e)
	}
	v.Set(s)
}

var (
	durationType = reflect.TypeFor[Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
)

func (d *decoder) scalar(n *yaml.Node, path string, v reflect.Value) {
	secret := isSecretKey(path)
	want := describeType(v.Type())
	if n.Kind != yaml.ScalarNode {
		d.mistyped(n, path, "expected %s, got %s", want, describeNode(n, secret))
		return
	}
	// yaml.v3 would truncate 1.5 into an int: accept only the tags that
	// convert exactly. Any scalar is text (database: 2024 is "2024").
	ok := true
	switch tag := n.ShortTag(); {
	case v.Type() == durationType || v.Type() == byteSizeType:
		// their UnmarshalYAML decides
	case v.Kind() == reflect.Int:
		ok = tag == "!!int"
	case v.Kind() == reflect.Float64:
		ok = tag == "!!int" || tag == "!!float"
	}
	if !ok {
		d.mistyped(n, path, "expected %s, got %s", want, describeNode(n, secret))
		return
	}
	dst := reflect.New(v.Type())
	if err := n.Decode(dst.Interface()); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			// yaml's own message quotes the value: never show it.
			d.mistyped(n, path, "expected %s, got %s", want, describeNode(n, secret))
		} else {
			d.mistyped(n, path, "%v", err) // from Duration or ByteSize: no secret
		}
		return
	}
	v.Set(dst.Elem())
}

// isSecretKey reports whether the value at path must never be shown.
func isSecretKey(path string) bool {
	name := path[strings.LastIndexByte(path, '.')+1:]
	return name == "verifier" || name == "password" || name == "md5"
}

func describeType(t reflect.Type) string {
	switch {
	case t == durationType:
		return `a duration such as "30s"`
	case t == byteSizeType:
		return `a size such as "64MiB"`
	}
	switch t.Kind() {
	case reflect.String:
		return "text"
	case reflect.Int:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	case reflect.Map:
		return "a mapping of names to text"
	}
	return t.String()
}

// describeNode names what n is, quoting a scalar's value unless secret.
func describeNode(n *yaml.Node, secret bool) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	if secret {
		return "a value that is not shown"
	}
	v := n.Value
	if r := []rune(v); len(r) > 40 {
		v = string(r[:37]) + "..."
	}
	return strconv.Quote(v)
}

// fieldSet maps the yaml keys of a struct to its field indexes.
type fieldSet struct {
	typ   reflect.Type
	index map[string]int
	names []string // in declaration order
}

func yamlFields(t reflect.Type) fieldSet {
	fs := fieldSet{typ: t, index: map[string]int{}}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		fs.index[name] = i
		fs.names = append(fs.names, name)
	}
	return fs
}

// hint suggests what an unknown key may have meant: the closest known key,
// a key inside a nested mapping written flat (pool_size is size: inside
// pool:, as PgBouncer users write it), or else the list of known keys.
func (fs fieldSet) hint(unknown string) string {
	if best := closest(unknown, fs.names); best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	for _, name := range fs.names {
		ft := fs.typ.Field(fs.index[name]).Type
		rest, ok := strings.CutPrefix(unknown, name+"_")
		if !ok || ft.Kind() != reflect.Struct {
			continue
		}
		if best := closest(rest, yamlFields(ft).names); best != "" {
			return fmt.Sprintf("; did you mean %s: inside %s:?", best, name)
		}
	}
	return "; known keys here: " + strings.Join(fs.names, ", ")
}

// closest returns the name nearest to s, allowing about one typo in three
// letters, or "".
func closest(s string, names []string) string {
	best, bestDist := "", len(s)/3+2
	for _, name := range names {
		if dist := editDistance(s, name); dist < bestDist {
			best, bestDist = name, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
