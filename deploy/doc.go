// Package deploy holds no code: its tests check the deployment files beside
// it against the gateway they deploy. aws/dsqlgate.yaml is the
// CloudFormation stack (ECS Fargate behind a Network Load Balancer in front
// of Aurora DSQL); kubernetes/ holds the manifests of the same gateway on
// Kubernetes, whose strict decoding into the Kubernetes API types lives in
// the nested module kubernetes/validate (make test-deploy runs it).
//
// The tests here parse the template and the manifests, take the gateway
// configuration each one carries, point its route at the DSQL emulator and
// run the real binary's `dsqlgate check` on it, so that neither can drift
// from what the binary accepts. They also pin the IAM policy to the DSQL
// actions the gateway needs, and the ports, probes and timeouts of the
// load balancer and the orchestrator to those the configuration serves.
// grafana/dsqlgate.json is a Grafana dashboard; its test reads every query
// against the /metrics of a gateway started on the test harness.
package deploy
