package users_test

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzVerifier puts arbitrary text, with a marker inside, in a user's
// verifier and checks that no error, config.Parse's or Load's, ever shows
// it.
func FuzzVerifier(f *testing.F) {
	f.Setenv("TEST_VERIFIER", testVerifier)
	f.Add("SCRAM-SHA-256$4096:", "c2FsdA==$x:y")
	f.Add("SCRAM-SHA-256$", ":$:")
	f.Add("", "")
	f.Add(testVerifier, "")
	f.Fuzz(func(t *testing.T, before, after string) {
		const mark = "Mk7Qz9Wp"
		secret := before + mark + after
		doc, err := yaml.Marshal(map[string]any{
			"users":  []map[string]string{{"name": "alice", "verifier": secret}},
			"routes": []map[string]string{{"database": "app", "endpoint": "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"}},
		})
		if err != nil {
			t.Skip() // not encodable as YAML
		}
		err = load(string(doc))
		if err == nil {
			// The marker can land on a base64 boundary and leave a valid
			// verifier; nothing to check then.
			return
		}
		if strings.Contains(err.Error(), mark) {
			t.Fatalf("error shows the verifier: %v", err)
		}
	})
}
