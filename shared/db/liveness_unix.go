//go:build unix

package db

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// peerClosed reports whether the server has already written to or closed
// the idle connection conn: a non-blocking, non-consuming peek at its
// socket. An idle pooled connection is owed nothing by the server, so
// pending bytes are almost always the FATAL message of a terminated backend
// followed by the end of the stream. The peek costs one system call and
// never waits.
func peerClosed(conn net.Conn) bool {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var (
		peekErr error
		buf     [1]byte
	)
	// Control, not Read: Read would queue behind pgconn's background reader
	// if one is still parked in a read on this socket, and wait forever.
	// MSG_DONTWAIT never blocks; MSG_PEEK leaves the bytes for pgconn.
	if err := raw.Control(func(fd uintptr) {
		_, _, peekErr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}); err != nil {
		return true // the descriptor is closed already
	}
	switch {
	case errors.Is(peekErr, syscall.EAGAIN), errors.Is(peekErr, syscall.EWOULDBLOCK), errors.Is(peekErr, syscall.EINTR):
		return false // nothing pending: alive as far as can be told
	case peekErr != nil:
		return true // reset, broken pipe, ...
	default:
		return true // the end of the stream, or bytes the server was not asked for
	}
}
