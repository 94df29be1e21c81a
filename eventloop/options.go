package eventloop

import "echoloop/eventloop/session"

// Options configures a Server. The zero value is a valid configuration: a
// single-threaded, line-framed echo server on session.DefaultAddr.
type Options struct {
	// Config is what the event loop shares with the goroutine-per-connection
	// server: address, framing, handler, connection cap, logger.
	session.Config

	// Loops is the number of event loops, each a goroutine blocked in
	// epoll_wait over its share of the connections. Zero means 1: every
	// connection on one loop, the select-style server. The server accepts
	// on a goroutine of its own either way (see accept.go).
	Loops int

	// ReadBufferCap is the most one read(2) takes from a socket, in bytes,
	// rounded up to a power of two; each loop has one such buffer. Zero means
	// gnet's default, 64 KiB.
	ReadBufferCap int

	// LockOSThread pins each event loop to its own OS thread. Default off.
	LockOSThread bool

	// EdgeTriggered registers sockets edge-triggered: gnet then reads and
	// writes each ready socket until EAGAIN, and no longer switches
	// EPOLLOUT on and off as output backs up, and the loop cannot stop
	// reading a peer that does not read its replies (see readSwitch).
	// Default off (level-triggered).
	EdgeTriggered bool
}
