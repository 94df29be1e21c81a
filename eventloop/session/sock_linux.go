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
