package e2e

import "net"

type netConn = net.Conn

var dialer net.Dialer
