// Package reference builds docs/CONFIG.md, the reference of every
// configuration key, from the config package itself, so that the page
// cannot drift from the code: the keys, their order and their types by
// reflection over config.Config's yaml tags; the defaults from
// config.Default and config.DefaultRoute; the environment variables from
// config.EnvVar. Each key's description comes from keys.md, written for the
// people who run the gateway; the Go doc comments of the config types are
// for the people who change it, and may name Go identifiers, which the page
// must not.
//
// Command genref writes the page (go run ./config/internal/genref); a test
// in package config regenerates it and fails when the committed page
// differs, when a key has no description in keys.md, or when keys.md
// describes a key that does not exist. It knows nothing of the rules
// Validate applies beyond what keys.md says.
package reference

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/dsqlgate/dsqlgate/config"
)

// Command is how the page is regenerated, from the repository root.
const Command = "go run ./config/internal/genref"

// Generate returns the page. It fails, naming each, when a key has no
// description in keys.md or keys.md describes a key that does not exist.
func Generate() ([]byte, error) {
	descs, err := parseDescriptions(keysText)
	if err != nil {
		return nil, err
	}
	// A route's defaults depend on its kind, and some on its database.
	route := func(kind string) variant {
		r := config.DefaultRoute(kind, routeDatabase)
		r.Database = ""                           // the argument, not a default
		r.Kind = config.DefaultRoute("", "").Kind // the kind of a route that sets none
		return variant{label: "kind " + kind, v: reflect.ValueOf(r)}
	}
	g := &generator{
		descs: descs,
		elems: map[reflect.Type][]variant{
			reflect.TypeFor[config.Route](): {route(config.KindDSQL), route(config.KindPostgres)},
		},
		env: config.EnvVar,
	}
	g.walk(reflect.TypeFor[config.Config](), []variant{{v: reflect.ValueOf(*config.Default())}}, "")
	if err := g.err(); err != nil {
		return nil, err
	}
	return g.page(), nil
}

// routeDatabase stands for a route's database in its defaults, so that a
// default taken from it (upstream_database of kind postgres) shows as such.
const routeDatabase = "\x00database"

// keysText holds the description of every key.
//
//go:embed keys.md
var keysText string

// parseDescriptions returns the sections of text, a keys.md: each starts
// with a line "## " and its key path and runs to the next; what comes
// before the first is left out. Each description is trimmed Markdown.
func parseDescriptions(text string) (map[string]string, error) {
	descs := map[string]string{}
	key := ""
	var body []string
	flush := func() {
		if key != "" {
			descs[key] = strings.TrimSpace(strings.Join(body, "\n"))
		}
	}
	for line := range strings.SplitSeq(text, "\n") {
		name, ok := strings.CutPrefix(line, "## ")
		if !ok {
			body = append(body, line)
			continue
		}
		flush()
		key, body = strings.TrimSpace(name), nil
		if _, dup := descs[key]; dup {
			return nil, fmt.Errorf("keys.md: %s is described twice", key)
		}
	}
	flush()
	return descs, nil
}

// variant is the default value of a type in one case: a route's defaults
// depend on its kind.
type variant struct {
	label string // "kind dsql"; empty when there is one variant
	v     reflect.Value
}

// entry is one key of the page.
type entry struct {
	path string // routes[].pool.size
	typ  string // "whole number"
	def  string // rendered default; empty for a mapping
	env  string // variable or an explanation of why there is none
	doc  string // Markdown
}

type generator struct {
	descs   map[string]string          // key path → description, from keys.md
	elems   map[reflect.Type][]variant // defaults of list elements; zero when absent
	env     func(key string) string    // config.EnvVar
	entries []entry
	missing []string // keys without a description
}

// err reports the keys without a description and the descriptions of no
// key.
func (g *generator) err() error {
	var msgs []string
	if len(g.missing) > 0 {
		msgs = append(msgs, "keys without a description in keys.md:\n\t"+strings.Join(g.missing, "\n\t"))
	}
	var unknown []string
	for key := range g.descs {
		if !slices.ContainsFunc(g.entries, func(e entry) bool { return e.path == key }) {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		msgs = append(msgs, "keys.md describes keys that do not exist:\n\t"+strings.Join(unknown, "\n\t"))
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// walk adds the keys of struct type t, at key path path, whose defaults are
// vs.
func (g *generator) walk(t reflect.Type, vs []variant, path string) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		key := name
		if path != "" {
			key = path + "." + name
		}
		text := g.descs[key]
		if text == "" {
			g.missing = append(g.missing, key)
		}
		fvs := make([]variant, len(vs))
		for j, v := range vs {
			fvs[j] = variant{label: v.label, v: v.v.Field(i)}
		}
		e := entry{path: key, typ: typeName(f.Type), doc: text, env: g.env(key)}
		switch {
		case e.env != "":
			e.env = "`" + e.env + "`"
		case strings.Contains(key, "[]"):
			e.env = "— (inside a list: only the file sets it)"
		case isList(f.Type):
			e.env = "— (a list of mappings: only the file sets it)"
		default:
			e.env = "— (a mapping: set its keys)"
		}
		switch {
		case isMapping(f.Type):
			g.entries = append(g.entries, e)
			g.walk(f.Type, fvs, key)
		case isList(f.Type):
			e.def = "none"
			g.entries = append(g.entries, e)
			elem := f.Type.Elem()
			evs, ok := g.elems[elem]
			if !ok {
				evs = []variant{{v: reflect.Zero(elem)}}
			}
			g.walk(elem, evs, key+"[]")
		default:
			e.def = renderDefault(fvs)
			g.entries = append(g.entries, e)
		}
	}
}

var (
	durationType = reflect.TypeFor[config.Duration]()
	byteSizeType = reflect.TypeFor[config.ByteSize]()
)

func isMapping(t reflect.Type) bool { return t.Kind() == reflect.Struct }

func isList(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct
}

// typeName names t as the page's Types section does.
func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t == byteSizeType:
		return "size"
	case isMapping(t):
		return "mapping"
	case isList(t):
		return "list of mappings"
	}
	switch t.Kind() {
	case reflect.String:
		return "text"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "whole number"
	case reflect.Float64:
		return "number"
	case reflect.Slice:
		return "list of " + typeName(t.Elem())
	case reflect.Map:
		return "mapping of names to " + typeName(t.Elem())
	}
	return t.String()
}

// renderDefault writes the default of one key: one value, or one per
// variant when they differ.
func renderDefault(vs []variant) string {
	first := renderValue(vs[0].v)
	same := true
	for _, v := range vs[1:] {
		same = same && renderValue(v.v) == first
	}
	if same {
		return first
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = renderValue(v.v) + " for " + v.label
	}
	return strings.Join(parts, "; ")
}

func renderValue(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return "`" + formatDuration(v.Interface().(config.Duration)) + "`"
	case v.Type() == byteSizeType:
		return "`" + v.Interface().(config.ByteSize).String() + "`"
	}
	switch v.Kind() {
	case reflect.String:
		switch s := v.String(); s {
		case "":
			return "empty"
		case routeDatabase:
			return "the route's `database`"
		default:
			return "`" + s + "`"
		}
	case reflect.Map:
		if v.Len() == 0 {
			return "empty"
		}
	case reflect.Slice:
		if v.Len() == 0 {
			return "empty"
		}
		items := make([]string, v.Len())
		for i := range items {
			items[i] = fmt.Sprint(v.Index(i).Interface())
		}
		return "`" + strings.Join(items, ",") + "`"
	}
	return "`" + fmt.Sprint(v.Interface()) + "`"
}

// formatDuration writes d as in the sample configuration: 10m, not 10m0s.
func formatDuration(d config.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// page writes the whole page.
func (g *generator) page() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "> Generated by `%s` from the config package (its keys and defaults) and config/internal/reference/keys.md (the descriptions); do not edit. A test fails when this page is out of date.\n\n", Command)
	b.WriteString(intro)
	for _, e := range g.entries {
		fmt.Fprintf(&b, "\n### `%s`\n\n", e.path)
		fmt.Fprintf(&b, "- Type: %s\n", e.typ)
		if e.def != "" {
			fmt.Fprintf(&b, "- Default: %s\n", e.def)
		}
		fmt.Fprintf(&b, "- Environment: %s\n", e.env)
		fmt.Fprintf(&b, "\n%s\n", e.doc)
	}
	b.WriteString("\n## Variable index\n\n| Variable | Key | Type |\n| --- | --- | --- |\n")
	for _, e := range g.entries {
		if strings.HasPrefix(e.env, "`"+config.EnvPrefix) {
			fmt.Fprintf(&b, "| %s | [`%s`](#%s) | %s |\n", e.env, e.path, anchor(e.path), e.typ)
		}
	}
	return b.Bytes()
}

// intro is the page before the keys: precedence, the environment, types.
//
//go:embed intro.md
var intro string

// anchor is the id GitHub gives the heading of key path.
func anchor(path string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return -1
	}, path)
}
