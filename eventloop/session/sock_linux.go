package session

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// UnreadBytes returns how many bytes wait in a socket's kernel receive
// queue: a draining server uses it to tell "nothing more has arrived" from
// "bytes in flight that the next read will return".
func UnreadBytes(fd int) (int, error) {
	n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return 0, os.NewSyscallError("ioctl SIOCINQ", err)
	}
	return n, nil
}

// UnsentBytes returns how many bytes written into a TCP socket wait in its
// kernel send queue, not yet acknowledged by the peer (SIOCOUTQ): replies
// the kernel still holds for a peer, which the write timeout watches.
func UnsentBytes(fd int) (int, error) {
	n, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return 0, os.NewSyscallError("ioctl SIOCOUTQ", err)
	}
	return n, nil
}

// LimitUnsent caps, at UnsentLimit, the replies the kernel keeps unsent in
// nc's send queue (TCP_NOTSENT_LOWAT): past it, write(2) takes no more and
// the replies wait in the server, where MaxPending and the memory budget
// count them. Both models set it on every connection they accept.
func LimitUnsent(nc net.Conn) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, UnsentLimit)
	}); err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt TCP_NOTSENT_LOWAT", serr)
}
