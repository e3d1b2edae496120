package deploy

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// templatePath is the CloudFormation stack, relative to this package.
const templatePath = "aws/dsqlgate.yaml"

// loadYAML parses one YAML document as a node tree: CloudFormation's short
// forms (!Sub, !Ref, !If ...) stay as tags, which a decode into Go values
// would refuse.
func loadYAML(t testing.TB, path string) *yaml.Node {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		t.Fatalf("%s: not one YAML document", path)
	}
	return doc.Content[0]
}

// get follows a path of mapping keys and, for a number written as "[i]",
// sequence indexes; it fails the test naming the first missing step.
func get(t testing.TB, n *yaml.Node, path ...string) *yaml.Node {
	t.Helper()
	if v := lookup(n, path...); v != nil {
		return v
	}
	t.Fatalf("template: no %s", strings.Join(path, "."))
	return nil
}

// lookup is get without failing: nil when a step is missing.
func lookup(n *yaml.Node, path ...string) *yaml.Node {
	for _, step := range path {
		switch {
		case n == nil:
			return nil
		case n.Kind == yaml.SequenceNode && strings.HasPrefix(step, "["):
			var i int
			if _, err := fmt.Sscanf(step, "[%d]", &i); err != nil || i >= len(n.Content) {
				return nil
			}
			n = n.Content[i]
		case n.Kind == yaml.MappingNode:
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == step {
					next = n.Content[i+1]
					break
				}
			}
			n = next
		default:
			return nil
		}
	}
	return n
}

// keys lists a mapping node's keys in order.
func keys(n *yaml.Node) []string {
	var out []string
	for i := 0; n != nil && n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		out = append(out, n.Content[i].Value)
	}
	return out
}

// scalars returns a scalar's value, or a sequence of scalars' values.
func scalars(n *yaml.Node) []string {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	var out []string
	for _, c := range n.Content {
		out = append(out, c.Value)
	}
	return out
}

// containerDef is the gateway's container in the task definition.
func containerDef(t testing.TB, tpl *yaml.Node) *yaml.Node {
	t.Helper()
	defs := get(t, tpl, "Resources", "TaskDefinition", "Properties", "ContainerDefinitions")
	if len(defs.Content) != 1 {
		t.Fatalf("template: %d container definitions, want the gateway's alone", len(defs.Content))
	}
	return defs.Content[0]
}

// namedEntry finds the item of a sequence of {Name: ..., ...} mappings
// (Environment, Secrets; Kubernetes' env with name) with that name.
func namedEntry(t testing.TB, seq *yaml.Node, name string) *yaml.Node {
	t.Helper()
	for _, item := range seq.Content {
		n := lookup(item, "Name")
		if n == nil {
			n = lookup(item, "name")
		}
		if n != nil && n.Value == name {
			return item
		}
	}
	t.Fatalf("no entry named %s (line %d)", name, seq.Line)
	return nil
}

// subVar matches one ${...} of Fn::Sub; ${!...} is a literal "${...}".
var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

// sub evaluates a !Sub node (the short form with a string, or with
// [string, {name: value}]) given the values of its variables. The
// variables of its own mapping must be given too, by name: the test picks
// each value. Any variable left without a value fails the test, so that a
// new one in the template needs a test value here.
func sub(t testing.TB, n *yaml.Node, vars map[string]string) string {
	t.Helper()
	if n.Tag != "!Sub" {
		t.Fatalf("template line %d: want !Sub, got %q", n.Line, n.Tag)
	}
	text := n.Value
	if n.Kind == yaml.SequenceNode {
		text = n.Content[0].Value
		for _, k := range keys(n.Content[1]) {
			if _, ok := vars[k]; !ok {
				t.Fatalf("template line %d: !Sub variable %s has no test value", n.Line, k)
			}
		}
	}
	var missing []string
	out := subVar.ReplaceAllStringFunc(text, func(m string) string {
		name := m[2 : len(m)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}"
		}
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		t.Fatalf("template line %d: !Sub variables without a test value: %v", n.Line, missing)
	}
	return out
}

// TestTemplateParameters: every variable the configuration's !Sub names is
// a parameter, a pseudo parameter or one of its own; the verifier
// parameter's pattern accepts what `dsqlgate passwd` prints.
func TestTemplateParameters(t *testing.T) {
	tpl := loadYAML(t, templatePath)
	params := keys(get(t, tpl, "Parameters"))
	cfg := get(t, namedEntry(t, get(t, containerDef(t, tpl), "Environment"), "DSQLGATE_CONFIG_YAML"), "Value")
	own := keys(cfg.Content[1])
	for _, m := range subVar.FindAllStringSubmatch(cfg.Content[0].Value, -1) {
		name := m[1]
		if strings.HasPrefix(name, "AWS::") || slices.Contains(params, name) || slices.Contains(own, name) {
			continue
		}
		t.Errorf("the configuration names ${%s}, which is no parameter", name)
	}
	if v := get(t, tpl, "Parameters", "FirstUserVerifier", "NoEcho"); v.Value != "true" {
		t.Errorf("FirstUserVerifier: NoEcho is %q, want true", v.Value)
	}
	pattern := regexp.MustCompile(get(t, tpl, "Parameters", "FirstUserVerifier", "AllowedPattern").Value)
	if v := testVerifier(t, "a password"); !pattern.MatchString(v) {
		t.Errorf("FirstUserVerifier's AllowedPattern refuses a verifier dsqlgate makes: %s", pattern)
	}
	name := regexp.MustCompile(get(t, tpl, "Parameters", "FirstUserName", "AllowedPattern").Value)
	if !name.MatchString(testUser) || name.MatchString(`a"b`) || name.MatchString("a b") {
		t.Errorf("FirstUserName's AllowedPattern %s must take %q and refuse quotes and spaces (the userlist line quotes the name)", name, testUser)
	}
}

// TestTemplateCheckovSkips: every check the template leaves failing on
// purpose is skipped in checkov's own format, on the resource concerned,
// with the reason.
func TestTemplateCheckovSkips(t *testing.T) {
	tpl := loadYAML(t, templatePath)
	res := get(t, tpl, "Resources")
	id := regexp.MustCompile(`^CKV2?_AWS_[0-9]+$`)
	n := 0
	for _, name := range keys(res) {
		skips := lookup(res, name, "Metadata", "checkov", "skip")
		if skips == nil {
			continue
		}
		for _, s := range skips.Content {
			n++
			if v := lookup(s, "id"); v == nil || !id.MatchString(v.Value) {
				t.Errorf("%s: a checkov skip without a check id such as CKV_AWS_91", name)
			}
			if c := lookup(s, "comment"); c == nil || len(strings.Fields(c.Value)) < 8 {
				t.Errorf("%s: a checkov skip without a reason", name)
			}
		}
	}
	if n == 0 {
		t.Errorf("no checkov skips: the NLB access-log check (CKV_AWS_91) cannot pass with a TCP listener")
	}
}
