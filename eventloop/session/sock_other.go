//go:build !linux

package session

import "errors"

// UnreadBytes reports 0 where the receive queue cannot be asked: a draining
// server then closes as soon as its own buffers are empty.
func UnreadBytes(fd int) (int, error) { return 0, nil }

// UnsentBytes cannot ask the kernel here: the write timeout then sees only
// what the server itself holds.
func UnsentBytes(fd int) (int, error) { return 0, errors.ErrUnsupported }
