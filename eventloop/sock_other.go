//go:build !linux

package eventloop

import "errors"

// bytesWritten is unsupported here: a half-closing peer then gets only what
// gnet's last non-blocking write attempt sends.
func bytesWritten(int) (int64, error) { return 0, errors.ErrUnsupported }
