package dsqlsim

import "time"

// Fixtures and internals shared with the black-box tests of package
// dsqlsim_test (which may import internal/pgtest; this package's own tests
// may not, since pgtest imports dsqlsim).
const (
	TestHost     = testHost
	TestRegion   = testRegion
	TestSkew     = testSkew
	ReapInterval = reapInterval
)

var (
	TestCred        = testCred
	TestSessionCred = testSessionCred
	TestCreds       = testCreds
	SDKToken        = sdkToken
	AssertNoSecrets = assertNoSecrets
)

func (s *Server) MaxConnDurationForTest() time.Duration {
	return time.Duration(s.maxConnDuration.Load())
}
