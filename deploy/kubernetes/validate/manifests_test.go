package validate

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// dir holds the manifests.
const dir = ".."

// manifests are the decoded objects, by kind.
type manifests struct {
	namespace  *corev1.Namespace
	account    *corev1.ServiceAccount
	configMap  *corev1.ConfigMap
	secret     *corev1.Secret // the example, not applied
	deployment *appsv1.Deployment
	pdb        *policyv1.PodDisruptionBudget
	service    *corev1.Service // dsqlgate: the load balancer
	peers      *corev1.Service // dsqlgate-peers: headless, for peers.dns
}

// kustomization is the part of kustomization.yaml checked here.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// load decodes every manifest strictly into its API type.
func load(t *testing.T) *manifests {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		base := filepath.Base(f)
		if base != "kustomization.yaml" && !strings.Contains(base, ".example.") && !slices.Contains(k.Resources, base) {
			t.Errorf("%s is not in kustomization.yaml's resources", base)
		}
	}
	c := 0
	for _, img := range k.Images {
		if img.Name == "dsqlgate" && img.NewName != "" && img.NewTag != "" {
			c++
		}
	}
	if c != 1 {
		t.Errorf("kustomization.yaml: want one images entry for dsqlgate with newName and newTag")
	}
	m := &manifests{}
	for _, name := range append(slices.Clone(k.Resources), "users-secret.example.yaml") {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(data, &tm); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Namespace":
			m.namespace = &corev1.Namespace{}
			obj = m.namespace
		case "v1 ServiceAccount":
			m.account = &corev1.ServiceAccount{}
			obj = m.account
		case "v1 ConfigMap":
			m.configMap = &corev1.ConfigMap{}
			obj = m.configMap
		case "v1 Secret":
			m.secret = &corev1.Secret{}
			obj = m.secret
		case "apps/v1 Deployment":
			m.deployment = &appsv1.Deployment{}
			obj = m.deployment
		case "policy/v1 PodDisruptionBudget":
			m.pdb = &policyv1.PodDisruptionBudget{}
			obj = m.pdb
		case "v1 Service":
			svc := &corev1.Service{}
			if strings.HasPrefix(name, "peers-") {
				m.peers = svc
			} else {
				m.service = svc
			}
			obj = svc
		default:
			t.Fatalf("%s: unexpected %s %s", name, tm.APIVersion, tm.Kind)
		}
		// Strict: a misspelt or misplaced field is an error, as the API
		// server's strict field validation would make it.
		if err := yaml.UnmarshalStrict(data, obj); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for what, missing := range map[string]bool{
		"Namespace": m.namespace == nil, "ServiceAccount": m.account == nil, "ConfigMap": m.configMap == nil,
		"Secret example": m.secret == nil, "Deployment": m.deployment == nil,
		"PodDisruptionBudget": m.pdb == nil, "Service": m.service == nil, "peers Service": m.peers == nil,
	} {
		if missing {
			t.Fatalf("no %s among the manifests", what)
		}
	}
	return m
}

// gatewayConfig is what the manifests must agree with in the ConfigMap's
// dsqlgate.yaml.
type gatewayConfig struct {
	Listen          string `json:"listen"`
	ShutdownTimeout string `json:"shutdown_timeout"`
	UsersEnv        string `json:"users_env"`
	Metrics         struct {
		Listen string `json:"listen"`
	} `json:"metrics"`
	Routes []struct {
		Endpoint string `json:"endpoint"`
	} `json:"routes"`
	Peers struct {
		DNS string `json:"dns"`
	} `json:"peers"`
}

func (m *manifests) config(t *testing.T) gatewayConfig {
	t.Helper()
	text, ok := m.configMap.Data["dsqlgate.yaml"]
	if !ok {
		t.Fatal("the ConfigMap has no dsqlgate.yaml")
	}
	var c gatewayConfig
	if err := yaml.Unmarshal([]byte(text), &c); err != nil {
		t.Fatalf("the ConfigMap's dsqlgate.yaml: %v", err)
	}
	return c
}

func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return int32(n)
}

// container is the gateway's container.
func (m *manifests) container(t *testing.T) *corev1.Container {
	t.Helper()
	cs := m.deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("the Deployment has %d containers, want the gateway alone", len(cs))
	}
	return &cs[0]
}

// namedPort is the container port with that name.
func namedPort(t *testing.T, c *corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("the container has no port named %s", name)
	return 0
}

// TestObjectsDecodeStrictly: every manifest decodes into its API type with
// no unknown field, every object is in the Namespace, and the labels the
// selectors use are on the pods.
func TestObjectsDecodeStrictly(t *testing.T) {
	m := load(t)
	ns := m.namespace.Name
	for what, got := range map[string]string{
		"ServiceAccount": m.account.Namespace, "ConfigMap": m.configMap.Namespace, "Secret": m.secret.Namespace,
		"Deployment": m.deployment.Namespace, "PodDisruptionBudget": m.pdb.Namespace, "Service": m.service.Namespace,
		"peers Service": m.peers.Namespace,
	} {
		if got != ns {
			t.Errorf("%s is in namespace %q, want %q", what, got, ns)
		}
	}
	if m.namespace.Labels["elbv2.k8s.aws/pod-readiness-gate-inject"] != "enabled" {
		t.Errorf("the Namespace must enable the load balancer controller's pod readiness gate")
	}
	pod := labels.Set(m.deployment.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(m.deployment.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(pod) {
		t.Errorf("the Deployment's selector %v does not match its pods' labels %v (%v)", m.deployment.Spec.Selector, pod, err)
	}
	if img := m.container(t).Image; img != "dsqlgate" {
		t.Errorf("the container's image is %q: want dsqlgate, which kustomization.yaml's images entry replaces", img)
	}
	if sel, err := metav1.LabelSelectorAsSelector(m.pdb.Spec.Selector); err != nil || sel.Empty() || !sel.Matches(pod) {
		t.Errorf("the PodDisruptionBudget's selector does not match the pods (%v)", err)
	}
	if s := labels.SelectorFromSet(m.service.Spec.Selector); len(m.service.Spec.Selector) == 0 || !s.Matches(pod) {
		t.Errorf("the Service's selector %v does not match the pods' labels %v", m.service.Spec.Selector, pod)
	}
}

// TestDeployment: replicas across zones, hardening, probes on the port and
// paths the configuration serves, the configuration mounted where the
// command reads it, the users from the Secret, and a termination grace
// period covering the preStop pause and the drain.
func TestDeployment(t *testing.T) {
	m := load(t)
	cfg := m.config(t)
	d := m.deployment
	spec := d.Spec.Template.Spec
	c := m.container(t)

	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas: want 2 or more")
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling updates must keep every replica until its successor is ready (maxUnavailable 0)")
	}
	zone := false
	for _, tsc := range spec.TopologySpreadConstraints {
		sel, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
		if tsc.TopologyKey == "topology.kubernetes.io/zone" && err == nil && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			zone = true
		}
	}
	if !zone {
		t.Errorf("no topology spread across zones selecting the gateway's pods")
	}
	if spec.ServiceAccountName != m.account.Name {
		t.Errorf("serviceAccountName %q, want %q", spec.ServiceAccountName, m.account.Name)
	}
	if !strings.HasPrefix(m.account.Annotations["eks.amazonaws.com/role-arn"], "arn:aws:iam::") {
		t.Errorf("the ServiceAccount needs the IRSA annotation eks.amazonaws.com/role-arn")
	}
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Errorf("enableServiceLinks: want false (the Service dsqlgate would inject DSQLGATE_* variables)")
	}

	// Hardening.
	psc, sc := spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("the pod must run as a non-root user")
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("the container needs a read-only root filesystem, no privilege escalation and every capability dropped")
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Errorf("no memory limit")
	}

	// Ports and probes against the configuration.
	if got, want := namedPort(t, c, "postgres"), portOf(t, cfg.Listen); got != want {
		t.Errorf("container port postgres %d, the configuration listens on %d", got, want)
	}
	metrics := namedPort(t, c, "metrics")
	if want := portOf(t, cfg.Metrics.Listen); metrics != want {
		t.Errorf("container port metrics %d, metrics.listen is on %d", metrics, want)
	}
	for name, p := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{
		"readinessProbe": {c.ReadinessProbe, "/readyz"},
		"livenessProbe":  {c.LivenessProbe, "/livez"},
		"startupProbe":   {c.StartupProbe, "/startupz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an HTTP probe on %s", name, p.path)
			continue
		}
		g := p.probe.HTTPGet
		port := g.Port.IntVal
		if g.Port.StrVal != "" {
			port = namedPort(t, c, g.Port.StrVal)
		}
		if g.Path != p.path || port != metrics {
			t.Errorf("%s: %s on port %d, want %s on the metrics port %d", name, g.Path, port, p.path, metrics)
		}
	}

	// The configuration file: mounted where the command reads it.
	args := strings.Join(append(slices.Clone(c.Command), c.Args...), " ")
	m1 := regexp.MustCompile(`--config[ =](\S+)`).FindStringSubmatch(args)
	if !strings.HasPrefix(args, "serve ") || m1 == nil {
		t.Fatalf("the container runs %q, want serve --config FILE", args)
	}
	file, mounted := m1[1], false
	for _, vm := range c.VolumeMounts {
		for _, v := range spec.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil || v.ConfigMap.Name != m.configMap.Name {
				continue
			}
			for _, item := range v.ConfigMap.Items {
				if filepath.Join(vm.MountPath, item.Path) == file && item.Key == "dsqlgate.yaml" {
					mounted = true
				}
			}
		}
	}
	if !mounted {
		t.Errorf("%s is not the ConfigMap's dsqlgate.yaml mounted", file)
	}
	// The one writable place is an emptyDir.
	tmp := false
	for _, vm := range c.VolumeMounts {
		for _, v := range spec.Volumes {
			if v.Name == vm.Name && v.EmptyDir != nil && vm.MountPath == "/tmp" {
				tmp = true
			}
		}
	}
	if !tmp {
		t.Errorf("no emptyDir at /tmp beside the read-only root filesystem")
	}

	// Users: users_env from the Secret the example shows.
	var users *corev1.EnvVar
	region := ""
	for i, e := range c.Env {
		switch e.Name {
		case cfg.UsersEnv:
			users = &c.Env[i]
		case "AWS_REGION":
			region = e.Value
		}
	}
	if users == nil || users.ValueFrom == nil || users.ValueFrom.SecretKeyRef == nil {
		t.Fatalf("users_env %q is not set from a Secret", cfg.UsersEnv)
	}
	ref := users.ValueFrom.SecretKeyRef
	if ref.Name != m.secret.Name {
		t.Errorf("%s comes from Secret %q, the example is %q", cfg.UsersEnv, ref.Name, m.secret.Name)
	}
	if _, ok := m.secret.StringData[ref.Key]; !ok {
		t.Errorf("the example Secret has no key %q", ref.Key)
	}
	if len(cfg.Routes) == 0 || !strings.Contains(cfg.Routes[0].Endpoint, ".dsql."+region+".") {
		t.Errorf("AWS_REGION %q is not the region of the route's endpoint", region)
	}

	// Termination: preStop pause, then SIGTERM and the drain.
	shutdown, err := time.ParseDuration(cfg.ShutdownTimeout)
	if err != nil {
		t.Fatalf("shutdown_timeout: %v", err)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds < 5 {
		t.Fatalf("want a preStop sleep of at least 5s, so the load balancer stops sending new clients before the drain")
	}
	pause := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if spec.TerminationGracePeriodSeconds == nil || time.Duration(*spec.TerminationGracePeriodSeconds)*time.Second <= pause+shutdown {
		t.Errorf("terminationGracePeriodSeconds must exceed the preStop pause %v plus shutdown_timeout %v", pause, shutdown)
	}
}

// TestService: an AWS NLB from the load balancer controller, with IP
// targets and HTTP health checks on /readyz of the metrics port, to the
// port the gateway listens on; named dsqlgate.
func TestService(t *testing.T) {
	m := load(t)
	cfg := m.config(t)
	s := m.service
	c := m.container(t)
	if s.Name != "dsqlgate" || s.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Errorf("want Service dsqlgate of type LoadBalancer, got %s %s", s.Name, s.Spec.Type)
	}
	const p = "service.beta.kubernetes.io/aws-load-balancer-"
	want := map[string]string{
		p + "type":                 "external",
		p + "nlb-target-type":      "ip",
		p + "healthcheck-protocol": "http",
		p + "healthcheck-path":     "/readyz",
		p + "healthcheck-port":     fmt.Sprint(portOf(t, cfg.Metrics.Listen)),
	}
	for k, v := range want {
		if got := s.Annotations[k]; got != v {
			t.Errorf("annotation %s is %q, want %q", k, got, v)
		}
	}
	if len(s.Spec.Ports) != 1 {
		t.Fatalf("the Service has %d ports, want the client port alone", len(s.Spec.Ports))
	}
	sp := s.Spec.Ports[0]
	target := sp.TargetPort.IntVal
	if sp.TargetPort.StrVal != "" {
		target = namedPort(t, c, sp.TargetPort.StrVal)
	}
	if sp.Protocol != corev1.ProtocolTCP || sp.Port != 5432 || target != portOf(t, cfg.Listen) {
		t.Errorf("Service port %s %d -> %d, want TCP 5432 -> the gateway's %d", sp.Protocol, sp.Port, target, portOf(t, cfg.Listen))
	}
	if m.pdb.Spec.MaxUnavailable == nil || m.pdb.Spec.MaxUnavailable.IntValue() >= int(*m.deployment.Spec.Replicas) {
		t.Errorf("the PodDisruptionBudget must keep at least one replica")
	}
}

// TestPeersService: the replicas find each other through a headless
// Service over every pod, ready or not (a draining pod must still get the
// cancels of its sessions), on the gateway's client port, and peers.dns
// names it.
func TestPeersService(t *testing.T) {
	m := load(t)
	cfg := m.config(t)
	s := m.peers
	if s.Spec.ClusterIP != corev1.ClusterIPNone || s.Spec.Type == corev1.ServiceTypeLoadBalancer {
		t.Errorf("Service %s: want headless (clusterIP: None), got clusterIP %q type %s", s.Name, s.Spec.ClusterIP, s.Spec.Type)
	}
	if !s.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: publishNotReadyAddresses must be true, so a draining pod stays a peer", s.Name)
	}
	pod := labels.Set(m.deployment.Spec.Template.Labels)
	if sel := labels.SelectorFromSet(s.Spec.Selector); len(s.Spec.Selector) == 0 || !sel.Matches(pod) {
		t.Errorf("Service %s: selector %v does not match the pods' labels %v", s.Name, s.Spec.Selector, pod)
	}
	if len(s.Spec.Ports) != 1 {
		t.Fatalf("Service %s has %d ports, want the client port alone", s.Name, len(s.Spec.Ports))
	}
	sp := s.Spec.Ports[0]
	target := sp.TargetPort.IntVal
	if sp.TargetPort.StrVal != "" {
		target = namedPort(t, m.container(t), sp.TargetPort.StrVal)
	}
	listen := portOf(t, cfg.Listen)
	if target != listen || sp.Port != listen {
		t.Errorf("Service %s port %d -> %d, want the gateway's client port %d on both sides (peers dial the pod's address)", s.Name, sp.Port, target, listen)
	}
	want := fmt.Sprintf("%s.%s.svc.cluster.local:%d", s.Name, m.namespace.Name, listen)
	if cfg.Peers.DNS != want {
		t.Errorf("peers.dns is %q, want %q (the headless Service)", cfg.Peers.DNS, want)
	}
}
