package session

import (
	"os"

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
