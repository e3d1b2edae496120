package config_test

import (
	"fmt"

	"github.com/dsqlgate/dsqlgate/config"
)

// Every problem in a file is reported at once, each with its file, line and
// key path.
func ExampleParse() {
	_, err := config.Parse([]byte(`
users: [{name: alice, verifier_env: ALICE_VERIFIER, auth: trust}]
routes:
  - database: app
    endpoint: abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws
    pool_size: 5
    pool:
      max_lifetime: 90
`), "dsqlgate.yaml")
	fmt.Println(err)
	// Output:
	// dsqlgate.yaml:2: users[0].auth: "trust" is not one of scram-sha-256, md5, password (or leave it empty for scram-sha-256)
	// dsqlgate.yaml:6: routes[0].pool_size: unknown key; did you mean size: inside pool:?
	// dsqlgate.yaml:8: routes[0].pool.max_lifetime: duration 90 has no unit; write "90s"
}

// The environment overrides the file: each key outside a list has a
// variable. Every problem names its variable; a misspelt variable is
// ignored with a warning and a hint.
func ExampleConfig_ApplyEnv() {
	c := config.Default()
	err := c.ApplyEnv([]string{
		"HOME=/home/gw",
		"DSQLGATE_LOG_LEVEL=debug",
		"DSQLGATE_ADMIN_USERS=alice,bob",
		"DSQLGATE_SHUTDOWN_TIMEOUT=30",
		"DSQLGATE_METRICS_LISTN=:9187",
	})
	fmt.Println(c.Log.Level, c.Admin.Users)
	fmt.Println(err)
	for _, w := range c.Warnings() {
		fmt.Println("warning:", w)
	}
	// Output:
	// debug [alice bob]
	// DSQLGATE_SHUTDOWN_TIMEOUT: shutdown_timeout: duration 30 has no unit; write "30s"
	// warning: DSQLGATE_METRICS_LISTN: unknown variable; did you mean DSQLGATE_METRICS_LISTEN?
}
