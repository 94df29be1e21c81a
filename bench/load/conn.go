package load

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"echoloop/eventloop/frame"
)

// plan is one phase of traffic, shared read-only by every connection
// (windowEnd and budget are atomics, so a cancelled run can end early). Times
// are nanoseconds on the run clock (runner.now).
type plan struct {
	// perConn > 0: every connection sends exactly this many frames and no
	// more (the first round trip, idle mode's last round trip).
	perConn uint64
	// measure: whether perConn frames count in the Summary.
	measure bool

	// Load phases.
	windowStart int64        // frames sent (or due) from here on are measured
	windowEnd   atomic.Int64 // no frame is sent at or after this
	budget      *atomic.Int64
	// Open loop: frame i of the phase is due at t0+pacer.Offset(i) and goes
	// to the connection with traffic index i mod n; frames i0..iEnd-1 are
	// measured, none is sent from iEnd on.
	pacer       Pacer
	t0          int64
	n, i0, iEnd uint64
}

// never is fill's answer when a connection has nothing more to send in the
// phase.
const never = -1

// connState is the traffic and verification of one connection, the same for
// both clients. It is owned by one goroutine.
type connState struct {
	id       uint32 // payload connection id: the index in dial order
	idx      uint64 // open loop: traffic index among the connections open at the phase's start
	sendSeq  uint64 // next sequence number to send
	recvSeq  uint64 // next sequence number expected back
	phaseSeq uint64 // sendSeq when the phase began
	ring     []int64
	mask     uint64
}

func (c *connState) init(id uint32, pipeline int) {
	size := 1
	for size < pipeline {
		size *= 2
	}
	*c = connState{id: id, ring: make([]int64, size), mask: uint64(size - 1)}
}

func (c *connState) inflight() uint64 { return c.sendSeq - c.recvSeq }

// begin starts a phase for this connection.
func (c *connState) begin(idx uint64) {
	c.idx = idx
	c.phaseSeq = c.sendSeq
}

// remaining is how many frames the connection will send in the phase, or
// -1 if that depends on time or a shared budget.
func (c *connState) remaining(p *plan) int64 {
	sent := c.sendSeq - c.phaseSeq
	switch {
	case p.perConn > 0:
		return int64(p.perConn - min(sent, p.perConn))
	case p.pacer != nil:
		if p.iEnd <= c.idx {
			return 0
		}
		total := (p.iEnd - c.idx + p.n - 1) / p.n
		return int64(total - min(sent, total))
	}
	return -1
}

// fill appends to out the frames the connection may send at now: as many as
// the pipeline has room for and the phase allows. It returns the extended
// out and when the next frame is due: 0 if the pipeline is full, a time on
// the run clock if an open-loop frame is due later, never if the phase has
// nothing more for this connection.
func (c *connState) fill(out []byte, now int64, cfg *config, p *plan, st *stats) ([]byte, int64) {
	for c.inflight() < uint64(cfg.Pipeline) {
		k := c.sendSeq - c.phaseSeq
		var t int64
		var measured bool
		switch {
		case p.perConn > 0:
			if k >= p.perConn {
				return out, never
			}
			t, measured = now, p.measure
		case p.pacer != nil:
			i := k*p.n + c.idx
			if i >= p.iEnd {
				return out, never
			}
			t = p.t0 + int64(p.pacer.Offset(i))
			if t >= p.windowEnd.Load() {
				return out, never
			}
			if t > now {
				return out, t
			}
			measured = i >= p.i0
		default:
			if now >= p.windowEnd.Load() {
				return out, never
			}
			t, measured = now, now >= p.windowStart
			if measured && p.budget != nil && p.budget.Add(-1) < 0 {
				return out, never
			}
		}
		out = c.appendFrame(out, cfg)
		if measured {
			st.sent++
			c.ring[c.sendSeq&c.mask] = t
		} else {
			c.ring[c.sendSeq&c.mask] = ^t // negative: not measured
		}
		c.sendSeq++
	}
	return out, 0
}

func (c *connState) appendFrame(out []byte, cfg *config) []byte {
	switch codec := cfg.Codec.(type) { // the common framings without an interface call or a copy
	case frame.Line:
		out = cfg.payload.Append(out, c.id, c.sendSeq)
		return append(out, '\n')
	case frame.Fixed, frame.Raw:
		return cfg.payload.Append(out, c.id, c.sendSeq)
	case frame.Length:
		n := uint32(cfg.Size)
		out = append(out, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		return cfg.payload.Append(out, c.id, c.sendSeq)
	default:
		start := len(out)
		out = cfg.payload.Append(out, c.id, c.sendSeq)
		p := append([]byte(nil), out[start:]...)
		out, _ = codec.Append(out[:start], p) // prepare checked the framing carries the payload
		return out
	}
}

// errMismatch ends a connection whose replies are not what it sent.
var errMismatch = errors.New("load: reply does not match what was sent")

// errDrained ends a connection that the server closed in order (see
// connState.closed): not a failure.
var errDrained = errors.New("load: the server closed the connection in order")

// closed is why the connection ended when the server closed it (EOF), with
// partial bytes of a reply received. After whole, verified replies, on a
// connection answered before, the server closed it in order, as one that
// drains on SIGTERM does: it answers every frame it has read, then closes,
// and the frames still in flight were sent after it stopped reading. That
// is errDrained. A close in the middle of a reply, or before any reply (at
// a connection limit, say), is a failure: io.EOF.
func (c *connState) closed(partial int) error {
	switch {
	case partial > 0:
		return fmt.Errorf("%w: the server closed the connection in the middle of a reply (%d bytes of it received, %d frames in flight)",
			io.EOF, partial, c.inflight())
	case c.recvSeq == 0:
		return fmt.Errorf("%w: the server closed the connection before its first reply", io.EOF)
	}
	return fmt.Errorf("%w after %d replies, %d frames in flight", errDrained, c.recvSeq, c.inflight())
}

// unanswered is how many of the frames in flight are measured ones.
func (c *connState) unanswered() uint64 {
	n := uint64(0)
	for seq := c.recvSeq; seq != c.sendSeq; seq++ {
		if c.ring[seq&c.mask] >= 0 {
			n++
		}
	}
	return n
}

// consume decodes and verifies the replies at the start of in, received at
// now, and returns how many bytes they used. A reply that is not the next
// frame sent on this connection is a mismatch: it is recorded in st and
// errMismatch returned, since the stream cannot be trusted after it.
func (c *connState) consume(in []byte, now int64, cfg *config, st *stats) (int, error) {
	used := 0
	for used < len(in) {
		payload, n, err := cfg.recv.Decode(in[used:])
		if errors.Is(err, frame.ErrIncomplete) {
			break
		}
		if err != nil {
			st.mismatch(Mismatch{Conn: c.id, Seq: c.recvSeq & seqMask, Offset: -1, WantLen: cfg.Size,
				Reason: fmt.Sprintf("reply cannot be decoded as %s: %v", cfg.Codec, err)})
			return used, errMismatch
		}
		if c.recvSeq == c.sendSeq {
			m := cfg.payload.describe(payload, c.id, c.recvSeq)
			m.Reason = "reply to a frame never sent (" + m.Reason + ")"
			st.mismatch(m)
			return used, errMismatch
		}
		if !cfg.payload.Verify(payload, c.id, c.recvSeq) {
			st.mismatch(cfg.payload.describe(payload, c.id, c.recvSeq))
			return used, errMismatch
		}
		if t := c.ring[c.recvSeq&c.mask]; t >= 0 {
			st.record(now - t)
			st.verified++
			st.lastReply = now
		}
		st.liveFrames++
		c.recvSeq++
		used += n
	}
	return used, nil
}
