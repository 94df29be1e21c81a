//go:build !linux || poll_opt

package eventloop

import (
	"errors"

	"github.com/panjf2000/gnet/v2"
)

// readSwitch is unavailable here (not Linux, or gnet's poll_opt poller,
// which keeps a pointer in each epoll event's data): the loop keeps reading
// a peer that does not take its replies, and keeps its input up to
// MaxPending (see handler.keep).
type readSwitch struct{}

func findReadSwitch(gnet.EventLoop, bool) (readSwitch, bool) { return readSwitch{}, false }

func (readSwitch) set(int, bool, bool) error { return errors.ErrUnsupported }
