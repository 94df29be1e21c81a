//go:build !linux

package eventloop

import "errors"

// bytesWritten is unsupported here: a half-closing peer then gets only what
// gnet's last non-blocking write attempt sends.
func bytesWritten(int) (int64, error) { return 0, errors.ErrUnsupported }

// bytesAcked is unsupported here, as is sendQueue.
func bytesAcked(int, *tcpInfo) (int64, error) { return 0, errors.ErrUnsupported }

// sendQueue is unsupported here: the write timeout then sees only the
// replies gnet holds, not those in the kernel's send queue.
func sendQueue(int, *tcpInfo) (acked int64, queued int, err error) {
	return 0, 0, errors.ErrUnsupported
}

type tcpInfo struct{}
