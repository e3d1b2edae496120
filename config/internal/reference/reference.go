// Package reference builds docs/CONFIG.md, the reference of every
// configuration key, from the config package itself, so that the page
// cannot drift from the code: the keys, their order and their types by
// reflection over config.Config's yaml tags; the defaults from
// config.Default and config.DefaultRoute; the environment variables from
// config.EnvVar; and each description from the field's doc comment, read
// from the package's source with go/parser and go/doc.
//
// Command genref writes the page (go run ./config/internal/genref); a test
// in package config regenerates it and fails when the committed page
// differs or a field has no doc comment. It knows nothing of the rules
// Validate applies beyond what the comments say.
package reference

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"go/ast"
	"go/doc"
	"go/doc/comment"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/dsqlgate/dsqlgate/config"
)

// Command is how the page is regenerated, from the repository root.
const Command = "go run ./config/internal/genref"

// Generate returns the page for the config package whose source files are
// in dir. It fails, naming each, when a field that is a key has no doc
// comment of its own.
func Generate(dir string) ([]byte, error) {
	docs, err := fieldDocs(dir)
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
		docs: docs,
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

// fieldDocs returns the doc comment of every struct field declared in the
// Go files of dir (tests left out), by type name and field name.
func fieldDocs(dir string) (map[string]map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no Go files in %s", dir)
	}
	pkg, err := doc.NewFromFiles(fset, files, "github.com/dsqlgate/dsqlgate/config")
	if err != nil {
		return nil, err
	}
	docs := map[string]map[string]string{}
	for _, t := range pkg.Types {
		for _, spec := range t.Decl.Specs {
			ts, ok := spec.(*ast.TypeSpec)
			if !ok {
				continue
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				continue
			}
			fields := map[string]string{}
			for _, f := range st.Fields.List {
				for _, n := range f.Names {
					fields[n.Name] = f.Doc.Text()
				}
			}
			docs[ts.Name.Name] = fields
		}
	}
	return docs, nil
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
	docs    map[string]map[string]string // type name → field name → doc comment
	elems   map[reflect.Type][]variant   // defaults of list elements; zero when absent
	env     func(key string) string      // config.EnvVar
	entries []entry
	missing []string // fields without a doc comment
}

func (g *generator) err() error {
	if len(g.missing) == 0 {
		return nil
	}
	return errors.New("fields without a doc comment, which the reference takes its descriptions from:\n\t" + strings.Join(g.missing, "\n\t"))
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
		text := g.docs[t.Name()][f.Name]
		if strings.TrimSpace(text) == "" {
			g.missing = append(g.missing, fmt.Sprintf("%s.%s (key %s)", t.Name(), f.Name, key))
		}
		fvs := make([]variant, len(vs))
		for j, v := range vs {
			fvs[j] = variant{label: v.label, v: v.v.Field(i)}
		}
		e := entry{path: key, typ: typeName(f.Type), doc: markdown(text), env: g.env(key)}
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

// markdown turns a doc comment into Markdown, one line per paragraph.
func markdown(text string) string {
	var p comment.Parser
	var pr comment.Printer
	return strings.TrimSpace(string(pr.Markdown(p.Parse(text))))
}

// page writes the whole page.
func (g *generator) page() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "> Generated by `%s` from the config package (its types, defaults and field comments); do not edit. A test fails when this page is out of date.\n\n", Command)
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
