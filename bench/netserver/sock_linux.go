package netserver

import (
	"os"

	"golang.org/x/sys/unix"
)

// unackedBytes is how many bytes written into a TCP socket the peer has not
// acknowledged yet (SIOCOUTQ): replies the kernel still holds for it.
func unackedBytes(fd int) (int, error) {
	n, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return 0, os.NewSyscallError("ioctl SIOCOUTQ", err)
	}
	return n, nil
}
