package authbridge

import "github.com/dsqlgate/dsqlgate/config"

// Compat is the route's compatibility-layer configuration (pgwire applies
// it to the route's client sessions).
func (r *Route) Compat() config.Compat { return r.compat }
