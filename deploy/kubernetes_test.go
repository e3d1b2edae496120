package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// kubernetesConfig returns the ConfigMap's dsqlgate.yaml and the variable
// its users_env names, after checking that the Deployment sets that
// variable from a Secret. The nested module kubernetes/validate checks the
// manifests against the Kubernetes API types; this reads only what the
// configuration-drift test needs.
func kubernetesConfig(t testing.TB) (config, usersEnv string) {
	t.Helper()
	cm := loadYAML(t, filepath.Join("kubernetes", "configmap.yaml"))
	config = get(t, cm, "data", "dsqlgate.yaml").Value
	usersEnv = parseGatewayConfig(t, config).UsersEnv
	if usersEnv == "" {
		t.Fatal("kubernetes/configmap.yaml: the configuration has no users_env")
	}
	dep := loadYAML(t, filepath.Join("kubernetes", "deployment.yaml"))
	env := get(t, dep, "spec", "template", "spec", "containers", "[0]", "env")
	e := namedEntry(t, env, usersEnv)
	if lookup(e, "valueFrom", "secretKeyRef", "name") == nil {
		t.Fatalf("kubernetes/deployment.yaml: %s must come from a Secret (valueFrom.secretKeyRef)", usersEnv)
	}
	return config, usersEnv
}

// TestKubernetesSecretIsAnExample: the committed Secret holds no real
// verifier and is not applied by the kustomization.
func TestKubernetesSecretIsAnExample(t *testing.T) {
	s := loadYAML(t, filepath.Join("kubernetes", "users-secret.example.yaml"))
	for _, line := range strings.Split(get(t, s, "stringData", "userlist").Value, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := scram.ParseVerifier(strings.Trim(f[1], `"`)); err == nil || !strings.Contains(f[1], "REPLACE") {
			t.Errorf("users-secret.example.yaml must hold a placeholder, not a verifier: %s", f[0])
		}
	}
	k, err := os.ReadFile(filepath.Join("kubernetes", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kust struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(k, &kust); err != nil {
		t.Fatal(err)
	}
	for _, r := range kust.Resources {
		if r == "users-secret.example.yaml" {
			t.Errorf("kustomization.yaml applies the example Secret")
		}
	}
}
