//go:build !linux

package session

import (
	"errors"
	"net"
)

// UnreadBytes reports 0 where the receive queue cannot be asked: a draining
// server then closes as soon as its own buffers are empty.
func UnreadBytes(fd int) (int, error) { return 0, nil }

// UnsentBytes cannot ask the kernel here: the write timeout then sees only
// what the server itself holds.
func UnsentBytes(fd int) (int, error) { return 0, errors.ErrUnsupported }

// LimitUnsent has no TCP_NOTSENT_LOWAT to set here: the kernel's send
// buffer alone bounds the replies it keeps.
func LimitUnsent(net.Conn) error { return nil }
