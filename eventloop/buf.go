package eventloop

import "echoloop/eventloop/session"

// minInBuf is the smallest input buffer a connection gets for a partial
// frame: most partial frames are a small tail of one read.
const minInBuf = 512

// inBufs recycles connections' input buffers in power-of-two classes, so a
// stream of frames that straddle reads does not allocate one per frame.
var inBufs session.BufPool

// appendBuf appends p to buf, growing it by doubling from what has arrived:
// a buffer's size follows the bytes received, never what a header
// announces. A grown buffer's old array goes back to inBufs. It returns the
// new buffer and how many bytes it copied (p, plus buf when it moved), for
// the loop's copy count.
func appendBuf(buf, p []byte) ([]byte, int) {
	n := len(buf) + len(p)
	if n <= cap(buf) {
		return append(buf, p...), len(p)
	}
	grown := inBufs.Get(max(n, 2*cap(buf), minInBuf))[:0]
	grown = append(grown, buf...)
	grown = append(grown, p...)
	putBuf(buf)
	return grown, n
}

// putBuf gives buf's array back to inBufs; buf must not be used afterwards.
func putBuf(buf []byte) {
	if cap(buf) > 0 {
		inBufs.Put(buf)
	}
}
