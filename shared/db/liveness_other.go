//go:build !unix

package db

import "net"

// peerClosed cannot peek at sockets on this platform; pgxpool's own check
// (a ping after a second idle) and Read's retry remain.
func peerClosed(net.Conn) bool { return false }
