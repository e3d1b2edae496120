// Command dsqlgate is a PostgreSQL wire-protocol gateway for Amazon Aurora
// DSQL: clients log in with an ordinary user name and password, the gateway
// opens its own IAM-authenticated DSQL connections and keeps client sessions
// alive across DSQL's token expiry and connection lifetime.
package main

import "os"

func main() {
	os.Exit(execute(os.Args[1:], streams{in: os.Stdin, out: os.Stdout, err: os.Stderr}))
}
