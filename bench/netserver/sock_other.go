//go:build !linux

package netserver

import "errors"

// unackedBytes cannot ask the kernel here: the write timeout then applies
// only while a write blocks.
func unackedBytes(int) (int, error) { return 0, errors.ErrUnsupported }
