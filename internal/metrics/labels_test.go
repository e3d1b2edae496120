package metrics

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// labelsOf are the label names of each collector, by its field name in
// Metrics, with the values created before anything happens ("route" is
// any configured route: AddRoute).
func labelsOf() map[string][]labelValues {
	route := labelValues{name: "route"}
	return map[string][]labelValues{
		"ClientConnections":            {{"state", clientStates}},
		"ClientConnectionsOpenedTotal": {{"outcome", openedOutcomes}},
		"BytesTotal":                   {{"direction", byteDirections}},
		"CancelRequestsReceivedTotal":  {{"source", cancelSources}},
		"CancelRequestsTotal":          {{"outcome", cancelOutcomes}},
		"ConfigReloadsTotal":           {{"outcome", reloadOutcomes}},
		"UpstreamDialsTotal":           {route, {"outcome", dialOutcomes}},
		"TokenMintsTotal":              {route, {"outcome", mintOutcomes}},
		"UpstreamReplacementsTotal":    {route, {"reason", replacementReasons}},
		"UpstreamErrorsTotal":          {route, {"sqlstate", SQLStateLabels()}},
		"PoolWaitSeconds":              {route},
		"TransactionSeconds":           {route},
		"QuerySeconds":                 {route},
		"TokenMintSeconds":             {route},
		"StateSyncsTotal":              {route},
		"OCCRetriesTotal":              {route},
		"OCCRetriesExhaustedTotal":     {route},
	}
}

// labelValues is one label and the values New and AddRoute create.
type labelValues struct {
	name   string
	values []string
}

// TestCreatedLabelValues creates the series of a gateway with one route
// and requires exactly the label values listed above: a value added to a
// list but not created (or the reverse) fails here.
func TestCreatedLabelValues(t *testing.T) {
	m := New()
	m.AddRoute("r1")
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string][]string{} // family → label → values
	for _, f := range families {
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if got[f.GetName()] == nil {
					got[f.GetName()] = map[string][]string{}
				}
				got[f.GetName()][l.GetName()] = append(got[f.GetName()][l.GetName()], l.GetValue())
			}
		}
	}
	for _, f := range []struct {
		name  string
		field string
	}{
		{"dsqlgate_client_connections", "ClientConnections"},
		{"dsqlgate_client_connections_opened_total", "ClientConnectionsOpenedTotal"},
		{"dsqlgate_bytes_total", "BytesTotal"},
		{"dsqlgate_cancel_requests_received_total", "CancelRequestsReceivedTotal"},
		{"dsqlgate_cancel_requests_total", "CancelRequestsTotal"},
		{"dsqlgate_config_reloads_total", "ConfigReloadsTotal"},
		{"dsqlgate_upstream_dials_total", "UpstreamDialsTotal"},
		{"dsqlgate_token_mints_total", "TokenMintsTotal"},
		{"dsqlgate_upstream_replacements_total", "UpstreamReplacementsTotal"},
		{"dsqlgate_upstream_errors_total", "UpstreamErrorsTotal"},
		{"dsqlgate_pool_wait_seconds", "PoolWaitSeconds"},
		{"dsqlgate_transaction_duration_seconds", "TransactionSeconds"},
		{"dsqlgate_query_duration_seconds", "QuerySeconds"},
		{"dsqlgate_token_mint_duration_seconds", "TokenMintSeconds"},
		{"dsqlgate_session_state_syncs_total", "StateSyncsTotal"},
		{"dsqlgate_occ_retries_total", "OCCRetriesTotal"},
		{"dsqlgate_occ_retries_exhausted_total", "OCCRetriesExhaustedTotal"},
	} {
		for _, l := range labelsOf()[f.field] {
			want := l.values
			if l.name == "route" {
				want = []string{"r1"}
			}
			have := slices.Compact(slices.Sorted(slices.Values(got[f.name][l.name])))
			if !slices.Equal(have, slices.Sorted(slices.Values(want))) {
				t.Errorf("%s{%s}: created %q, want %q", f.name, l.name, have, want)
			}
		}
	}
}

// TestLabelValuesUsedAreCreated reads the module's Go sources for every
// WithLabelValues on a collector of Metrics and requires each label value
// it can work out (a literal, a constant, a variable or field only ever
// set to those, a parameter every caller passes one to) to be among those
// New and AddRoute create. A value missing there would make its series
// appear only when first counted, so an alert on it sees nothing rather
// than 0 until then.
func TestLabelValuesUsedAreCreated(t *testing.T) {
	root := moduleRoot(t)
	self, _ := filepath.Abs(".")
	pkgs := map[string][]*ast.File{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (name == "testdata" || strings.HasPrefix(name, ".") || path == self) {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir // a nested module
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		pkgs[filepath.Dir(path)] = append(pkgs[filepath.Dir(path)], f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	labels := labelsOf()
	checked := 0
	for _, files := range pkgs {
		p := newPkgIndex(files)
		for _, fn := range p.funcs {
			ast.Inspect(fn, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "WithLabelValues" && sel.Sel.Name != "GetMetricWithLabelValues") {
					return true
				}
				field := p.collectorField(sel.X, fn)
				ls, ok := labels[field]
				if !ok {
					return true
				}
				if len(call.Args) != len(ls) {
					t.Errorf("%s: %s.%s with %d values, want %d", fset.Position(call.Pos()), field, sel.Sel.Name, len(call.Args), len(ls))
					return true
				}
				for i, arg := range call.Args {
					if ls[i].name == "route" || isCallTo(arg, "SQLStateLabel") {
						continue
					}
					values, ok := p.resolve(arg, fn, 0)
					if !ok {
						t.Logf("%s: %s's %s label: value not worked out from the source (the e2e start-up test covers it at run time)", fset.Position(arg.Pos()), field, ls[i].name)
						continue
					}
					checked++
					for _, v := range slices.Compact(slices.Sorted(slices.Values(values))) {
						if !slices.Contains(ls[i].values, v) {
							t.Errorf("%s: %s counts %s=%q, which New/AddRoute do not create (add it to the list in metrics.go)", fset.Position(arg.Pos()), field, ls[i].name, v)
						}
					}
				}
				return true
			})
		}
	}
	// The calls of pgwire and authbridge this test knows of: fewer means
	// it no longer finds them, and would pass having read nothing.
	if checked < 10 {
		t.Errorf("only %d label values worked out from the sources; the scan is broken", checked)
	}
}

// moduleRoot is the directory of the go.mod above this package.
func moduleRoot(t *testing.T) string {
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the package")
		}
		dir = parent
	}
}

// pkgIndex is what resolving a label value needs of one package.
type pkgIndex struct {
	funcs  []*ast.FuncDecl
	consts map[string]string
}

func newPkgIndex(files []*ast.File) *pkgIndex {
	p := &pkgIndex{consts: map[string]string{}}
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				p.funcs = append(p.funcs, d)
			case *ast.GenDecl:
				if d.Tok != token.CONST {
					continue
				}
				for _, s := range d.Specs {
					vs := s.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if i < len(vs.Values) {
							if v, ok := stringLit(vs.Values[i]); ok {
								p.consts[n.Name] = v
							}
						}
					}
				}
			}
		}
	}
	return p
}

// collectorField is the Metrics field x names: the last selector
// (p.route.metrics.UpstreamDialsTotal), or the field a local variable was
// set to (m := ....UpstreamReplacementsTotal).
func (p *pkgIndex) collectorField(x ast.Expr, fn *ast.FuncDecl) string {
	switch x := x.(type) {
	case *ast.SelectorExpr:
		return x.Sel.Name
	case *ast.Ident:
		field := ""
		ast.Inspect(fn, func(n ast.Node) bool {
			if as, ok := n.(*ast.AssignStmt); ok && len(as.Lhs) == len(as.Rhs) {
				for i, l := range as.Lhs {
					if id, ok := l.(*ast.Ident); ok && id.Name == x.Name {
						if sel, ok := as.Rhs[i].(*ast.SelectorExpr); ok {
							field = sel.Sel.Name
						}
					}
				}
			}
			return true
		})
		return field
	}
	return ""
}

// resolve is every string e can hold, when the source says: a literal, a
// constant, a local variable or a struct field only ever set (or keyed in
// a composite literal) to those, or a parameter every caller in the
// package passes one of those to. ok is false when something else reaches
// it.
func (p *pkgIndex) resolve(e ast.Expr, fn *ast.FuncDecl, depth int) (values []string, ok bool) {
	if depth > 4 {
		return nil, false
	}
	if v, ok := stringLit(e); ok {
		return []string{v}, true
	}
	switch e := e.(type) {
	case *ast.Ident:
		if v, ok := p.consts[e.Name]; ok {
			return []string{v}, true
		}
		if i := paramIndex(fn, e.Name); i >= 0 {
			return p.callerArgs(fn, i, depth)
		}
		values, ok := p.assigned(fn, func(x ast.Expr) bool {
			id, ok := x.(*ast.Ident)
			return ok && id.Name == e.Name
		}, "", depth)
		return values, ok && len(values) > 0 // none: a range variable, say
	case *ast.SelectorExpr:
		var all []string
		for _, f := range p.funcs {
			vs, ok := p.assigned(f, func(x ast.Expr) bool {
				s, ok := x.(*ast.SelectorExpr)
				return ok && s.Sel.Name == e.Sel.Name
			}, e.Sel.Name, depth)
			if !ok {
				return nil, false
			}
			all = append(all, vs...)
		}
		return all, len(all) > 0
	}
	return nil, false
}

// assigned is every value fn assigns to what target matches (and, with
// key, every value a composite literal in fn gives the field key).
func (p *pkgIndex) assigned(fn *ast.FuncDecl, target func(ast.Expr) bool, key string, depth int) (values []string, ok bool) {
	ok = true
	add := func(x ast.Expr) {
		vs, good := p.resolve(x, fn, depth+1)
		ok = ok && good
		values = append(values, vs...)
	}
	ast.Inspect(fn, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			for i, l := range n.Lhs {
				if target(l) {
					if len(n.Lhs) != len(n.Rhs) {
						ok = false
						continue
					}
					add(n.Rhs[i])
				}
			}
		case *ast.KeyValueExpr:
			if id, isID := n.Key.(*ast.Ident); isID && key != "" && id.Name == key {
				add(n.Value)
			}
		}
		return true
	})
	return values, ok
}

// callerArgs resolves argument i of every call in the package to a
// function or method named as fn, with as many arguments (without types,
// a method of another type by the same name and arity is taken too: more
// values, never fewer).
func (p *pkgIndex) callerArgs(fn *ast.FuncDecl, i, depth int) (values []string, ok bool) {
	ok = true
	arity := fn.Type.Params.NumFields()
	for _, f := range p.funcs {
		ast.Inspect(f, func(n ast.Node) bool {
			call, isCall := n.(*ast.CallExpr)
			if !isCall || !isCallTo(call, fn.Name.Name) || len(call.Args) != arity {
				return true
			}
			vs, good := p.resolve(call.Args[i], f, depth+1)
			ok = ok && good
			values = append(values, vs...)
			return true
		})
	}
	return values, ok && len(values) > 0
}

// paramIndex is the position of fn's parameter name, or -1.
func paramIndex(fn *ast.FuncDecl, name string) int {
	i := 0
	for _, f := range fn.Type.Params.List {
		for _, n := range f.Names {
			if n.Name == name {
				return i
			}
			i++
		}
	}
	return -1
}

// isCallTo reports whether e calls a function or method named name.
func isCallTo(e ast.Expr, name string) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	switch f := call.Fun.(type) {
	case *ast.Ident:
		return f.Name == name
	case *ast.SelectorExpr:
		return f.Sel.Name == name
	}
	return false
}

// stringLit is the value of a string literal.
func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	v, err := strconv.Unquote(lit.Value)
	return v, err == nil
}
