package netserver

import "echoloop/eventloop/session"

// Tracing (Config.Tracer) sees each read(2) the connection's goroutine
// makes: after every read serveBuffered serves what is buffered, and then
// traceRead reports the read. The session records the frames Serve
// completes and write the replies; the bytes the read brought follow from
// what is buffered: the bytes carried into the read and those it brought
// are the frames it completed and the bytes it carries on. When no Tracer
// is set, a connection has no connTrace, and a read pays a comparison in
// serveBuffered, one in Serve and one per write.

// connTrace is a connection's record of its reads, made at the first.
// Only the connection's goroutine touches it.
type connTrace struct {
	read    session.Read
	carried int // bytes buffered after the previous read's frames were served
}

// Recording implements session.Recorder.
func (c *conn) Recording() *session.Read {
	if c.trace == nil {
		c.trace = new(connTrace)
	}
	return &c.trace.read
}

// traceRead reports the read just served.
func (c *conn) traceRead() {
	r := c.Recording()
	carried := c.end - c.start
	r.In = r.Used() + carried - c.trace.carried
	r.Carried, c.trace.carried = carried, carried
	c.TraceRead(c, r)
}

// traceEOF reports a read that found the peer's EOF.
func (c *conn) traceEOF() {
	r := c.Recording()
	r.EOF, r.Carried = true, c.end-c.start
	c.TraceRead(c, r)
}

// traceWrite records a write of the current read's replies, n bytes. The
// greeting an OpenConn queues is written before the first read, when there
// is no connTrace yet.
func (c *conn) traceWrite(n int) {
	if c.trace != nil {
		c.trace.read.Wrote(n)
	}
}
