package dsqlsim

import "testing"

func TestHandshakeMessage(t *testing.T) {
	tests := []struct {
		typ        byte
		body, want string
	}{
		{'S', "server_version\x0015.8 (Debian 15.8-1.pgdg120+1)\x00", "server_version\x0016.9\x00"},
		{'S', "server_version_num\x00150008\x00", "server_version_num\x00150008\x00"},
		{'S', "TimeZone\x00UTC\x00", "TimeZone\x00UTC\x00"},
		{'K', "server_version\x0015\x00", "server_version\x0015\x00"},
	}
	for _, tt := range tests {
		if got := string(handshakeMessage(tt.typ, []byte(tt.body))); got != tt.want {
			t.Errorf("handshakeMessage(%c, %q) = %q, want %q", tt.typ, tt.body, got, tt.want)
		}
	}
}
