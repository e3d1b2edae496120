package deploy

import (
	"errors"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// gatewayConfig is the part of a gateway configuration the orchestration
// around it must agree with.
type gatewayConfig struct {
	Listen          string `yaml:"listen"`
	ShutdownTimeout string `yaml:"shutdown_timeout"`
	UsersEnv        string `yaml:"users_env"`
	Metrics         struct {
		Listen string `yaml:"listen"`
	} `yaml:"metrics"`
	ClientTLS struct {
		Mode string `yaml:"mode"`
		ACME struct {
			Domains []string `yaml:"domains"`
			Storage string   `yaml:"storage"`
		} `yaml:"acme"`
	} `yaml:"client_tls"`
	Routes []struct {
		Database string `yaml:"database"`
		Endpoint string `yaml:"endpoint"`
		Role     string `yaml:"role"`
	} `yaml:"routes"`
	Peers struct {
		DNS string `yaml:"dns"`
	} `yaml:"peers"`
}

// parseGatewayConfig decodes the keys gatewayConfig names.
func parseGatewayConfig(t testing.TB, text string) gatewayConfig {
	t.Helper()
	var c gatewayConfig
	if err := yaml.Unmarshal([]byte(text), &c); err != nil {
		t.Fatalf("the configuration is not YAML: %v", err)
	}
	return c
}

// port is the port of a host:port.
func port(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return n
}

// seconds parses a duration of the configuration.
func seconds(t testing.TB, d string) int {
	t.Helper()
	v, err := time.ParseDuration(d)
	if err != nil {
		t.Fatalf("duration %q: %v", d, err)
	}
	return int(v / time.Second)
}

// intOf parses a template number.
func intOf(t testing.TB, n *yaml.Node) int {
	t.Helper()
	v, err := strconv.Atoi(n.Value)
	if err != nil {
		t.Fatalf("template line %d: %q is not a number", n.Line, n.Value)
	}
	return v
}

// attribute finds a {Key, Value} attribute's value.
func attribute(t testing.TB, seq *yaml.Node, key string) string {
	t.Helper()
	for _, item := range seq.Content {
		if k := lookup(item, "Key"); k != nil && k.Value == key {
			return get(t, item, "Value").Value
		}
	}
	t.Fatalf("template: no attribute %s", key)
	return ""
}

// TestTemplateWiring: the load balancer, the task and the configuration
// agree: a TCP listener (never TLS: the gateway terminates it inside the
// protocol) on the port the gateway listens on; health checks over HTTP on
// /readyz of the metrics port; the container command; the stop timeout past
// shutdown_timeout; ACME on for DomainName with its storage on the route.
func TestTemplateWiring(t *testing.T) {
	tpl := loadYAML(t, templatePath)
	c := containerDef(t, tpl)
	cfg := parseGatewayConfig(t, evalSub(t, get(t, namedEntry(t, get(t, c, "Environment"), "DSQLGATE_CONFIG_YAML"), "Value"), templateVars()))
	res := get(t, tpl, "Resources")

	listen, metrics := port(t, cfg.Listen), port(t, cfg.Metrics.Listen)
	if listen != 5432 || metrics != 9187 {
		t.Errorf("listen port %d, metrics port %d; want 5432 and 9187", listen, metrics)
	}
	var ports []int
	for _, m := range get(t, c, "PortMappings").Content {
		ports = append(ports, intOf(t, get(t, m, "ContainerPort")))
	}
	if !slices.Equal(ports, []int{listen, metrics}) {
		t.Errorf("container ports %v, want [%d %d]", ports, listen, metrics)
	}
	want := []string{"serve", "--config-env", "DSQLGATE_CONFIG_YAML", "--log-format", "json"}
	if got := scalars(get(t, c, "Command")); !slices.Equal(got, want) {
		t.Errorf("Command %q, want %q", got, want)
	}

	l := get(t, res, "Listener", "Properties")
	if p := get(t, l, "Protocol").Value; p != "TCP" {
		t.Errorf("listener protocol %s: want TCP (a TLS listener cannot answer PostgreSQL's SSLRequest)", p)
	}
	if intOf(t, get(t, l, "Port")) != listen {
		t.Errorf("listener port is not the gateway's %d", listen)
	}
	tg := get(t, res, "TargetGroup", "Properties")
	for k, v := range map[string]string{
		"Protocol": "TCP", "TargetType": "ip", "HealthCheckProtocol": "HTTP",
		"HealthCheckPath": "/readyz", "HealthCheckPort": strconv.Itoa(metrics), "Port": strconv.Itoa(listen),
	} {
		if got := get(t, tg, k).Value; got != v {
			t.Errorf("target group %s is %q, want %q", k, got, v)
		}
	}
	if got := get(t, res, "Service", "Properties", "LoadBalancers", "[0]", "ContainerPort"); intOf(t, got) != listen {
		t.Errorf("the service registers container port %s, want %d", got.Value, listen)
	}
	if get(t, res, "LoadBalancer", "Properties", "Type").Value != "network" {
		t.Errorf("the load balancer must be a Network Load Balancer")
	}

	// Timeouts: ECS waits the deregistration delay, then sends SIGTERM; the
	// gateway drains for shutdown_timeout; SIGKILL comes at stopTimeout.
	shutdown := seconds(t, cfg.ShutdownTimeout)
	stop := intOf(t, get(t, c, "StopTimeout"))
	if stop <= shutdown || stop > 120 {
		t.Errorf("StopTimeout %ds must exceed shutdown_timeout %ds (and Fargate allows at most 120s)", stop, shutdown)
	}
	attrs := get(t, tg, "TargetGroupAttributes")
	if d, _ := strconv.Atoi(attribute(t, attrs, "deregistration_delay.timeout_seconds")); d < 10 || d > shutdown {
		t.Errorf("deregistration delay %ds: want at least 10s for the load balancer to stop sending new clients, at most shutdown_timeout %ds", d, shutdown)
	}
	if attribute(t, attrs, "deregistration_delay.connection_termination.enabled") != "false" {
		t.Errorf("the load balancer must not cut connections the gateway is draining")
	}
	dc := get(t, res, "Service", "Properties", "DeploymentConfiguration")
	if get(t, dc, "MinimumHealthyPercent").Value != "100" || get(t, dc, "MaximumPercent").Value != "200" ||
		get(t, dc, "DeploymentCircuitBreaker", "Enable").Value != "true" || get(t, dc, "DeploymentCircuitBreaker", "Rollback").Value != "true" {
		t.Errorf("deployments must be rolling (100%%/200%%) with the circuit breaker and rollback")
	}

	// TLS, users, route.
	if cfg.ClientTLS.Mode != "require" || !slices.Equal(cfg.ClientTLS.ACME.Domains, []string{templateVars()["DomainName"]}) {
		t.Errorf("client_tls: mode %q, acme.domains %v; want require and [DomainName]", cfg.ClientTLS.Mode, cfg.ClientTLS.ACME.Domains)
	}
	if len(cfg.Routes) != 1 || cfg.Routes[0].Role != "admin" || cfg.ClientTLS.ACME.Storage != "route:"+cfg.Routes[0].Database {
		t.Errorf("want one route as admin and ACME storage on it, got %+v, storage %q", cfg.Routes, cfg.ClientTLS.ACME.Storage)
	}
	if cfg.UsersEnv != get(t, c, "Secrets", "[0]", "Name").Value {
		t.Errorf("users_env %q is not the task's secret", cfg.UsersEnv)
	}
	if get(t, res, "Cluster", "Properties", "DeletionProtectionEnabled").Value != "true" {
		t.Errorf("the DSQL cluster must have deletion protection")
	}
}

// TestTemplatePeers: the tasks find each other for cancel forwarding.
// peers.dns is the ECS service discovery name the service registers its
// tasks under (the discovery service's name in the private namespace's
// name, with the client port), it answers A records (task addresses, as
// the gateway dials them) to every task, and the tasks' security group lets
// a task reach another's client port.
func TestTemplatePeers(t *testing.T) {
	tpl := loadYAML(t, templatePath)
	vars := templateVars()
	c := containerDef(t, tpl)
	cfg := parseGatewayConfig(t, evalSub(t, get(t, namedEntry(t, get(t, c, "Environment"), "DSQLGATE_CONFIG_YAML"), "Value"), vars))
	res := get(t, tpl, "Resources")

	ns := sub(t, get(t, res, "PeersNamespace", "Properties", "Name"), vars)
	disc := get(t, res, "PeersDiscovery", "Properties")
	if ref := get(t, disc, "NamespaceId"); ref.Tag != "!Ref" || ref.Value != "PeersNamespace" {
		t.Errorf("PeersDiscovery.NamespaceId is %s %s, want !Ref PeersNamespace", ref.Tag, ref.Value)
	}
	want := net.JoinHostPort(get(t, disc, "Name").Value+"."+ns, strconv.Itoa(port(t, cfg.Listen)))
	if cfg.Peers.DNS != want {
		t.Errorf("peers.dns is %q, want %q (the discovery service, on the client port)", cfg.Peers.DNS, want)
	}
	if get(t, disc, "DnsConfig", "RoutingPolicy").Value != "MULTIVALUE" || get(t, disc, "DnsConfig", "DnsRecords", "[0]", "Type").Value != "A" {
		t.Errorf("the discovery service must answer A records for every task (MULTIVALUE)")
	}
	reg := get(t, res, "Service", "Properties", "ServiceRegistries", "[0]", "RegistryArn")
	if reg.Tag != "!GetAtt" || reg.Value != "PeersDiscovery.Arn" {
		t.Errorf("the ECS service registers its tasks with %s %s, want !GetAtt PeersDiscovery.Arn", reg.Tag, reg.Value)
	}
	in := get(t, res, "TaskIngressPeers", "Properties")
	if get(t, in, "GroupId").Value != "TaskSecurityGroup" || get(t, in, "SourceSecurityGroupId").Value != "TaskSecurityGroup" ||
		intOf(t, get(t, in, "FromPort")) != port(t, cfg.Listen) || intOf(t, get(t, in, "ToPort")) != port(t, cfg.Listen) {
		t.Errorf("TaskIngressPeers must let the tasks reach each other's client port %d", port(t, cfg.Listen))
	}
}

// TestCfnLint runs cfn-lint on the template when it is installed: any
// error or warning fails (informational findings do not).
func TestCfnLint(t *testing.T) {
	bin, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Skip("cfn-lint is not on PATH (pip install cfn-lint); skipping the template's lint")
	}
	out, err := exec.Command(bin, "--", templatePath).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() == 8: // informational only
		t.Logf("cfn-lint (informational):\n%s", out)
	default:
		t.Fatalf("cfn-lint %s: %v\n%s", templatePath, err, out)
	}
}
