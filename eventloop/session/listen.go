package session

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listen opens the TCP listener a server accepts from, on c.Addr, with
// SO_REUSEPORT when c.ReusePort is set (SO_REUSEADDR is always on, as
// package net sets it). Both models listen through it, so they share a port
// on the same terms.
func (c *Config) Listen() (net.Listener, error) {
	lc := net.ListenConfig{}
	if c.ReusePort {
		lc.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(context.Background(), "tcp", c.Addr)
}
