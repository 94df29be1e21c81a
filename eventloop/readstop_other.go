//go:build !linux

package eventloop

import (
	"errors"

	"github.com/panjf2000/gnet/v2"
)

// readSwitch is unavailable here: the loop keeps reading a peer that does
// not take its replies, and keeps its input up to MaxPending (see
// handler.keep).
type readSwitch struct{}

func findReadSwitch(gnet.EventLoop, bool) (readSwitch, bool) { return readSwitch{}, false }

func (readSwitch) set(int, bool, bool) error { return errors.ErrUnsupported }
