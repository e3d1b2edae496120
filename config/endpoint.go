package config

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
)

// defaultPort is PostgreSQL's and DSQL's port.
const defaultPort = 5432

// Host returns the host name (or IP address) of r.Endpoint without the port
// or IPv6 brackets: the name to use for SNI, certificate checks and tokens.
// For an endpoint Validate refuses, it returns Endpoint unchanged.
func (r *Route) Host() string {
	host, _, err := splitEndpoint(r.Endpoint)
	if err != nil {
		return r.Endpoint
	}
	return host
}

// Port returns the port of r.Endpoint, 5432 when it names none, or 0 for an
// endpoint Validate refuses.
func (r *Route) Port() int {
	_, port, err := splitEndpoint(r.Endpoint)
	if err != nil {
		return 0
	}
	return port
}

// Address returns the host:port to dial: DialAddress when set, else the
// endpoint's host and port. For an endpoint Validate refuses, it returns
// Endpoint unchanged.
func (r *Route) Address() string {
	if r.DialAddress != "" {
		return r.DialAddress
	}
	host, port, err := splitEndpoint(r.Endpoint)
	if err != nil {
		return r.Endpoint
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// ResolvedRegion returns Region when set, else the region in a DSQL
// endpoint (see RegionFromEndpoint), else "". For a validated dsql route it
// is never empty.
func (r *Route) ResolvedRegion() string {
	if r.Region != "" {
		return r.Region
	}
	region, _ := RegionFromEndpoint(r.Host())
	return region
}

// RegionFromEndpoint returns the region in a DSQL cluster host name,
// <cluster-id>.dsql.<region>.on.aws, or the PrivateLink form
// <cluster-id>.dsql-<suffix>.<region>.on.aws. Case and a trailing dot are
// ignored. host carries no port. ok is false for any other host.
func RegionFromEndpoint(host string) (region string, ok bool) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	rest, found := strings.CutSuffix(h, ".on.aws")
	if !found {
		return "", false
	}
	labels := strings.Split(rest, ".")
	if len(labels) != 3 || !isLowerAlnum(labels[0]) {
		return "", false
	}
	if svc := labels[1]; svc != "dsql" {
		suffix, hasSuffix := strings.CutPrefix(svc, "dsql-")
		if !hasSuffix || !isLowerAlnum(suffix) {
			return "", false
		}
	}
	if !validRegion(labels[2]) {
		return "", false
	}
	return labels[2], true
}

// regionPattern matches AWS region names: us-east-1, ap-southeast-2,
// us-gov-west-1, eu-isoe-west-1.
var regionPattern = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)

func validRegion(s string) bool { return regionPattern.MatchString(s) }

func isLowerAlnum(s string) bool {
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return s != ""
}

// splitEndpoint splits "host", "host:port", "[v6]" or "[v6]:port" and
// checks both parts. Its errors quote the endpoint, which is never secret.
func splitEndpoint(e string) (host string, port int, err error) {
	if strings.Contains(e, "://") || strings.ContainsAny(e, "/?@ ") {
		return "", 0, fmt.Errorf("%q is not a host name: write only the host, such as db.example.com or db.example.com:5432", e)
	}
	host, portText := e, ""
	switch {
	case strings.HasPrefix(e, "[") && strings.HasSuffix(e, "]"):
		host = e[1 : len(e)-1]
	case strings.HasPrefix(e, "[") || strings.Count(e, ":") == 1:
		if host, portText, err = net.SplitHostPort(e); err != nil {
			return "", 0, fmt.Errorf("%q is not host or host:port", e)
		}
	case strings.Contains(e, ":"):
		return "", 0, fmt.Errorf("%q: write an IPv6 address in brackets, such as [::1]:5432", e)
	}
	port = defaultPort
	if portText != "" {
		if port, err = strconv.Atoi(portText); err != nil || port < 1 || port > 65535 {
			return "", 0, fmt.Errorf("port %q is not a number from 1 to 65535", portText)
		}
	}
	if host == "" {
		return "", 0, errors.New("the host is missing")
	}
	if net.ParseIP(host) == nil && !validHostname(host) {
		return "", 0, fmt.Errorf("%q is not a valid host name", host)
	}
	return host, port, nil
}

// validHostname accepts DNS names, with underscores (as container names
// have) and an optional trailing dot.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}
