//go:build !poll_opt

package eventloop

import (
	"reflect"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// readSwitch stops and restarts a loop's reading of one connection, the
// event loop's form of a blocked write: while a peer does not take its
// replies, the loop stops watching its socket for input, so its further
// frames wait in the kernel and TCP flow control stops the peer, as it stops
// a peer of the goroutine model, whose write blocks. Without it gnet reads
// every readable socket at every turn, and a client that never reads makes
// the loop read, decode and buffer all it sends until a limit closes it:
// 200 such clients kept the others waiting tens of milliseconds a round
// trip (BenchmarkSlowReadersBeside).
//
// gnet v2.10.0 has no call for this; its poller's epoll descriptor is an
// unexported field, which findReadSwitch reads (read-only, through reflect:
// gnet is pinned, and TestReadSwitchFound fails should a new version move
// it). set changes only the event mask of a socket gnet registered, in the
// form gnet's default poller registers it: level-triggered, with the
// descriptor as the event's data. (gnet's other poller, built with the
// poll_opt tag, keeps a pointer there instead: under that tag the switch
// is left out, see readstop_other.go.) gnet itself turns reading back on
// when it starts buffering a connection's output (ModReadWrite), which
// conn.write undoes at once, and when it has written all of it (ModRead),
// after which the loop reads that connection once more than it asked,
// keeps that read (see handler.keep) and stops again.
type readSwitch struct {
	epfd int // the loop's epoll descriptor; 0 when the switch is unavailable
}

// findReadSwitch returns the switch of gnet's loop el, and whether it has
// one: not with edge-triggered sockets, whose reads gnet continues from its
// own task queue.
func findReadSwitch(el gnet.EventLoop, edgeTriggered bool) (readSwitch, bool) {
	if edgeTriggered {
		return readSwitch{}, false
	}
	v := reflect.ValueOf(el)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return readSwitch{}, false
	}
	p := v.Elem().FieldByName("poller")
	if p.Kind() != reflect.Pointer || p.IsNil() || p.Elem().Kind() != reflect.Struct {
		return readSwitch{}, false
	}
	fd := p.Elem().FieldByName("fd")
	if fd.Kind() != reflect.Int || fd.Int() <= 0 {
		return readSwitch{}, false
	}
	return readSwitch{epfd: int(fd.Int())}, true
}

// set has the poller watch fd for input (read) and for room to write
// (write, which gnet needs while it holds output for fd).
func (r readSwitch) set(fd int, read, write bool) error {
	var ev uint32
	if read {
		ev |= unix.EPOLLIN | unix.EPOLLPRI
	}
	if write {
		ev |= unix.EPOLLOUT
	}
	return unix.EpollCtl(r.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Fd: int32(fd), Events: ev})
}
