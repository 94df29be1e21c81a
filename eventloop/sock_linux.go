package eventloop

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"echoloop/eventloop/session"
)

// bytesWritten is how many bytes the application has written into a TCP
// socket so far: those the peer acknowledged plus those still queued. Its
// growth across gnet's last write attempt tells how much of the pending
// replies that attempt wrote.
func bytesWritten(fd int) (int64, error) {
	var info tcpInfo
	acked, queued, err := sendQueue(fd, &info)
	return acked + int64(queued), err
}

// sendQueue returns how many bytes the peer has acknowledged so far and how
// many wait in the socket's send queue (sent but not acknowledged, or not
// sent yet): replies the server wrote that the peer has not taken. info is
// the caller's scratch space (x/sys's GetsockoptTCPInfo allocates one per
// call, and the sweep calls this for every connection written to).
func sendQueue(fd int, info *tcpInfo) (acked int64, queued int, err error) {
	if acked, err = bytesAcked(fd, info); err != nil {
		return 0, 0, err
	}
	if queued, err = session.UnsentBytes(fd); err != nil {
		return 0, 0, err
	}
	return acked, queued, nil
}

// bytesAcked returns how many bytes the peer has acknowledged so far
// (TCP_INFO), for a caller that has asked the send queue already.
func bytesAcked(fd int, info *tcpInfo) (int64, error) {
	size := uint32(unsafe.Sizeof(*info))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(info)), uintptr(unsafe.Pointer(&size)), 0); e != 0 {
		return 0, os.NewSyscallError("getsockopt TCP_INFO", e)
	}
	return int64(info.Bytes_acked), nil
}

// tcpInfo is the kernel's TCP_INFO.
type tcpInfo = unix.TCPInfo
