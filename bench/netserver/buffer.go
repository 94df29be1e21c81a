package netserver

import (
	"sync"

	"echoloop/eventloop/session"
)

// Read buffers adapt to the traffic in two tiers, and follow what has
// arrived, never what a header announces.
//
// A connection's own buffer starts at ReadBufferSize and doubles on every
// read that fills it, up to maxOwnBuffer, which it keeps until it has been
// quiet for shrinkAfter reads. A read that fills even that starts a burst:
// the connection borrows a burstSize buffer (gnet's read size, so both models
// read as much per system call) from burstBuffers for its reads and another
// for its replies, and gives both back as soon as a read leaves the buffer
// part empty, which means the socket is drained. Memory then follows the
// connections moving data at this moment, not every connection that ever
// did: 10,000 connections each keeping 64 KiB to read and 64 KiB of replies
// would hold 1.25 GiB, and the garbage collector would scan it.
//
// A frame larger than the burst buffer grows a buffer of the connection's
// own, by doubling each time its bytes fill the buffer, up to what the frame
// needs (its length once a header tells it, else the codec's largest
// frame). A 4-byte header announcing 1 MiB therefore costs the buffer the
// connection already had; each doubling follows bytes that arrived, so a
// buffer is never more than twice the partial frame it holds (plus the
// fixed first tiers), and a peer cannot make the server reserve memory by
// announcing it.
const (
	maxOwnBuffer = 8 << 10
	burstSize    = 64 << 10
)

// frameOverhead bounds the bytes a frame takes beyond its payload (a 4-byte
// length header, a '\n'): the most a frame whose length is not announced
// can need is the codec's largest payload plus this.
const frameOverhead = 8

// burstBuffers holds *[]byte of burstSize bytes.
var burstBuffers = sync.Pool{New: func() any {
	b := make([]byte, burstSize)
	return &b
}}

// shrinkAfter is how many small reads in a row give a grown buffer back: one
// small read is often just the tail of a frame.
const shrinkAfter = 16

// makeRoom prepares the buffer for the next read: it grows or shrinks it as
// nextSize decides (lending a burst buffer, or growing one of the
// connection's own for a large frame), moves unconsumed bytes to the front
// when the space after them is short, and brings the server's memory total
// up to date. Moving happens only when something was consumed before the
// unconsumed bytes (start > 0), so a partial frame is copied at most once per
// growth, not once per read.
func (c *conn) makeRoom() {
	if c.start == c.end {
		c.start, c.end = 0, 0
	}
	size, pending := c.nextSize(), c.end-c.start
	switch {
	case size == len(c.buf):
		if c.start == 0 || (c.end < len(c.buf) && c.start+max(c.Need(), 1) <= len(c.buf)) {
			return // room enough where it is
		}
		copy(c.buf, c.buf[c.start:c.end])
	case size == burstSize && len(c.buf) < burstSize:
		c.lentIn = burstBuffers.Get().(*[]byte)
		c.ownIn, c.buf = c.buf, *c.lentIn
		copy(c.buf, c.ownIn[c.start:c.end])
	default:
		var resized []byte
		if size > burstSize {
			resized = frameBuffers.Get(size) // a frame's buffer: see frameBuffers
		} else {
			resized = make([]byte, size)
		}
		copy(resized, c.buf[c.start:c.end])
		c.putFrameBuffer()
		c.giveBackIn()
		c.buf = resized
	}
	c.start, c.end = 0, pending
	c.filled = false
	if size != len(c.buf) || c.smallReads >= shrinkAfter {
		c.smallReads = 0
	}
	c.account()
}

// nextSize is the read buffer the next read should use: larger when
// unconsumed bytes fill the buffer (a partial frame that needs more) or the
// last read filled the free space of a small buffer (traffic that needs
// larger reads); back to ReadBufferSize after shrinkAfter small reads with
// nothing buffered; else as it is.
func (c *conn) nextSize() int {
	size, pending := len(c.buf), c.end-c.start
	switch {
	case pending == size, c.filled && size < burstSize:
		return c.grown(size, pending)
	case pending == 0 && c.lentIn == nil && size > c.srv.opts.ReadBufferSize && c.smallReads >= shrinkAfter:
		return c.srv.opts.ReadBufferSize
	}
	return size
}

// grown is the next tier after size: double up to maxOwnBuffer, then a lent
// burst buffer, then double again, capped at what the partial frame can
// need: the length a header announced (Need says more than one byte more),
// or else the codec's largest frame.
func (c *conn) grown(size, pending int) int {
	switch {
	case size < maxOwnBuffer:
		return min(2*size, maxOwnBuffer)
	case size < burstSize:
		return burstSize
	}
	limit := c.srv.frameLimit
	if need := c.Need(); need > pending+1 {
		limit = need
	}
	return max(min(2*size, limit), pending+1)
}

// settle ends a burst once a read has left the lent buffer part empty and
// what is unconsumed fits the connection's own buffer, and gives back the
// replies' buffer once they are written.
func (c *conn) settle() {
	if c.lentOut != nil {
		burstBuffers.Put(c.lentOut)
		c.lentOut, c.out, c.ownOut = nil, c.ownOut[:0], nil
	}
	keep := maxOwnBuffer
	if len(c.buf) > burstSize {
		// A frame-sized read buffer, kept while such frames keep coming:
		// keep room for their replies too, so they do not allocate each time.
		keep = 2 * len(c.buf)
	}
	if cap(c.out) > keep {
		c.out = nil // grown by a batch larger than this connection keeps
	}
	if c.lentIn != nil && !c.filled && c.end-c.start <= len(c.ownIn) {
		n := copy(c.ownIn, c.buf[c.start:c.end])
		c.buf, c.start, c.end = c.ownIn, 0, n
		c.giveBackIn()
	}
}

// frameBuffers recycles the read buffers of frames larger than a burst
// buffer: a connection grows one by doubling while a large frame arrives,
// and the pool takes each smaller one back instead of leaving it as garbage.
var frameBuffers session.BufPool

// putFrameBuffer gives the connection's own read buffer to frameBuffers
// when it is one of theirs; the caller replaces it.
func (c *conn) putFrameBuffer() {
	if c.lentIn == nil && cap(c.buf) > burstSize {
		frameBuffers.Put(c.buf)
	}
}

// giveBackIn returns the lent read buffer, if any, to the pool; the caller
// has copied out what it needs.
func (c *conn) giveBackIn() {
	if c.lentIn != nil {
		burstBuffers.Put(c.lentIn)
		c.lentIn, c.ownIn = nil, nil
	}
}

// dropBuffers lets go of every buffer the connection holds, the lent ones
// back to their pool, and brings the memory total down accordingly. The
// caller is done with their contents: the session has been closed and its
// partial frame counted.
func (c *conn) dropBuffers() {
	if c.lentOut != nil {
		burstBuffers.Put(c.lentOut)
		c.lentOut = nil
	}
	c.putFrameBuffer()
	c.giveBackIn()
	c.buf, c.out, c.ownOut = nil, nil, nil
	c.start, c.end = 0, 0
	c.account()
}
