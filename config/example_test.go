package config_test

import (
	"fmt"

	"github.com/dsqlgate/dsqlgate/config"
)

// Every problem in a file is reported at once, each with its file, line and
// key path.
func ExampleParse() {
	_, err := config.Parse([]byte(`
users: [{name: alice, verifier_env: DSQLGATE_EXAMPLE_UNSET}]
routes:
  - database: app
    endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws
    pool_size: 5
    pool:
      max_lifetime: 90
`), "dsqlgate.yaml")
	fmt.Println(err)
	// Output:
	// dsqlgate.yaml:2: users[0].verifier_env: environment variable DSQLGATE_EXAMPLE_UNSET is not set
	// dsqlgate.yaml:6: routes[0].pool_size: unknown key; did you mean size: inside pool:?
	// dsqlgate.yaml:8: routes[0].pool.max_lifetime: duration 90 has no unit; write "90s"
}
