// Package listenaddr asks the kernel which address a gnet engine's listener
// is bound to, which is how a listen on port 0 learns its port.
package listenaddr

import (
	"fmt"
	"net"
	"syscall"

	"github.com/panjf2000/gnet/v2"
)

// Of returns the address eng's listener is bound to.
func Of(eng gnet.Engine) (net.Addr, error) {
	fd, err := eng.Dup()
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}, nil
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}, nil
	}
	return nil, fmt.Errorf("listener has an unexpected address type %T", sa)
}
