package deploy

import (
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// statement is one IAM policy statement of the template, with where it is.
type statement struct {
	where    string // resource and policy name
	actions  []string
	resource *yaml.Node
	node     *yaml.Node
}

// policyStatements collects every statement of every IAM policy in the
// template: inline policies of roles, and role policies.
func policyStatements(t testing.TB, tpl *yaml.Node) []statement {
	t.Helper()
	var out []statement
	add := func(where string, doc *yaml.Node) {
		for _, st := range get(t, doc, "Statement").Content {
			out = append(out, statement{
				where:    where,
				actions:  scalars(lookup(st, "Action")),
				resource: lookup(st, "Resource"),
				node:     st,
			})
		}
	}
	res := get(t, tpl, "Resources")
	for _, name := range keys(res) {
		r := get(t, res, name)
		switch get(t, r, "Type").Value {
		case "AWS::IAM::Role":
			if ps := lookup(r, "Properties", "Policies"); ps != nil {
				for _, p := range ps.Content {
					add(name+"/"+get(t, p, "PolicyName").Value, get(t, p, "PolicyDocument"))
				}
			}
		case "AWS::IAM::RolePolicy", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy":
			add(name, get(t, r, "Properties", "PolicyDocument"))
		}
	}
	return out
}

// TestTemplateIAM: the DSQL rights are exactly dsql:DbConnect and
// dsql:DbConnectAdmin, on this cluster's ARN, for the task role; no action
// is a wildcard; the task role holds nothing but those and the Route 53
// rights of DNS-01; the execution role reads only the users secret and
// writes only the log group (and pulls the image, when from ECR).
func TestTemplateIAM(t *testing.T) {
	tpl := loadYAML(t, templatePath)
	var dsql []statement
	for _, st := range policyStatements(t, tpl) {
		if len(st.actions) == 0 {
			t.Errorf("%s: a statement without Action (NotAction?)", st.where)
		}
		if lookup(st.node, "NotAction") != nil || lookup(st.node, "NotResource") != nil {
			t.Errorf("%s: NotAction/NotResource grants more than it names", st.where)
		}
		if e := get(t, st.node, "Effect").Value; e != "Allow" {
			continue
		}
		for _, a := range st.actions {
			if strings.Contains(a, "*") {
				t.Errorf("%s: wildcard action %q", st.where, a)
			}
			if strings.HasPrefix(strings.ToLower(a), "dsql:") {
				dsql = append(dsql, st)
				break
			}
		}
		role := strings.SplitN(st.where, "/", 2)[0]
		for _, a := range st.actions {
			if !slices.Contains(allowedActions[role], a) {
				t.Errorf("%s: action %s is not one this role needs", st.where, a)
			}
		}
		if st.resource != nil && st.resource.Value == "*" {
			for _, a := range st.actions {
				if !slices.Contains(starActions, a) {
					t.Errorf(`%s: %s on Resource "*"; only actions without resource-level permissions may have it`, st.where, a)
				}
			}
		}
	}
	if len(dsql) != 1 {
		t.Fatalf("%d statements grant dsql actions, want exactly one", len(dsql))
	}
	st := dsql[0]
	if !strings.HasPrefix(st.where, "TaskRole/") {
		t.Errorf("dsql actions granted by %s, want the task role", st.where)
	}
	got := slices.Sorted(slices.Values(st.actions))
	if want := []string{"dsql:DbConnect", "dsql:DbConnectAdmin"}; !slices.Equal(got, want) {
		t.Errorf("dsql actions %v, want %v", got, want)
	}
	// The cluster's ARN: arn:...:dsql:region:account:cluster/<id>, the id
	// the created cluster's or the parameter's.
	r := st.resource
	if r == nil || r.Tag != "!Sub" || r.Kind != yaml.SequenceNode {
		t.Fatalf("dsql statement's Resource must be the cluster ARN built by !Sub [text, {ClusterId: ...}]")
	}
	if want := "arn:${AWS::Partition}:dsql:${AWS::Region}:${AWS::AccountId}:cluster/${ClusterId}"; r.Content[0].Value != want {
		t.Errorf("dsql Resource %q, want %q", r.Content[0].Value, want)
	}
	id := get(t, r.Content[1], "ClusterId")
	if id.Tag != "!If" || len(id.Content) != 3 || id.Content[0].Value != "CreateCluster" ||
		id.Content[1].Tag != "!GetAtt" || id.Content[1].Value != "Cluster.Identifier" ||
		id.Content[2].Tag != "!Ref" || id.Content[2].Value != "ExistingClusterId" {
		t.Errorf("ClusterId (line %d) must be !If [CreateCluster, !GetAtt Cluster.Identifier, !Ref ExistingClusterId]", id.Line)
	}
	// The task runs as TaskRole, and ECS as ExecutionRole.
	td := get(t, tpl, "Resources", "TaskDefinition", "Properties")
	if v := get(t, td, "TaskRoleArn"); v.Value != "TaskRole.Arn" {
		t.Errorf("TaskRoleArn is %q, want TaskRole", v.Value)
	}
	if v := get(t, td, "ExecutionRoleArn"); v.Value != "ExecutionRole.Arn" {
		t.Errorf("ExecutionRoleArn is %q, want ExecutionRole", v.Value)
	}
}

// allowedActions are, per role resource, the actions it may hold.
var allowedActions = map[string][]string{
	"TaskRole": {
		"dsql:DbConnect", "dsql:DbConnectAdmin",
		"route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets",
		// Not route53:ListHostedZonesByName: the configuration names the
		// zone (route53_hosted_zone_id), so the zone is never looked up.
		"route53:GetChange",
	},
	"ExecutionRole": {
		"secretsmanager:GetSecretValue", "kms:Decrypt",
		"logs:CreateLogStream", "logs:PutLogEvents",
	},
	"ExecutionRoleEcrPolicy": {
		"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
		"ecr:GetAuthorizationToken",
	},
}

// starActions have no resource-level permissions: IAM takes only "*".
var starActions = []string{"route53:ListHostedZonesByName", "ecr:GetAuthorizationToken"}
