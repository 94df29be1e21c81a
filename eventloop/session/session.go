// Package session is the half of a connection that does not depend on the
// concurrency model: decoding the buffered bytes into frames, dispatching each
// to the handler, encoding the replies, and recording why the connection
// ended. The gnet event loop and the goroutine-per-connection server both
// drive a Session, so they frame, dispatch and account identically; they
// differ only in how bytes get in and out.
package session

import (
	"errors"
	"net"
	"sync/atomic"

	"github.com/rs/zerolog"

	"echoloop/eventloop/frame"
	"echoloop/handlers"
)

var lastID atomic.Uint64

// NextID returns a connection ID unique within this process.
func NextID() uint64 { return lastID.Add(1) }

// Session is one connection's framing, dispatch and accounting state.
//
// A Session is driven by one goroutine at a time (the event loop that owns
// the connection, or the connection's own goroutine): Open, Serve and Close
// must not run concurrently. It implements handlers.Conn for the handler calls
// made from Open and Serve.
//
// Its fields are kept few because a server holds one per connection: the
// codec and handler are reached through the server's Config.
type Session struct {
	id       uint64
	remote   net.Addr
	cfg      *Config // the server's, read-only once serving
	counters *Counters
	async    handlers.AsyncConn

	out       []byte // replies queued during Open or Serve; nil otherwise
	need      int    // bytes a partial frame needs buffered in all; see Need
	err       error  // what caused reason, for the close log
	framesOut int32  // replies queued during the current call
	reason    Reason // why the connection is closing; Open while it is not
	opened    bool   // counted by Counters.TryOpen
}

// Init prepares s for a new connection. cfg must have been prepared and must
// not change while the session lives. remote may be nil. async is the
// model's handle for Conn.Async; it must stay valid after the connection
// closes (returning handlers.ErrClosed).
func (s *Session) Init(cfg *Config, counters *Counters, remote net.Addr, async handlers.AsyncConn) {
	*s = Session{
		id:       NextID(),
		remote:   remote,
		cfg:      cfg,
		counters: counters,
		async:    async,
	}
}

// ID implements handlers.Conn.
func (s *Session) ID() uint64 { return s.id }

// Codec returns the connection's codec; it is immutable, so any goroutine
// may use it to encode frames for the connection.
func (s *Session) Codec() frame.Codec { return s.cfg.Codec }

// RemoteAddr implements handlers.Conn.
func (s *Session) RemoteAddr() net.Addr { return s.remote }

// Async implements handlers.Conn.
func (s *Session) Async() handlers.AsyncConn { return s.async }

// Reply implements handlers.Conn.
func (s *Session) Reply(payload []byte) error {
	if s.reason != Open {
		return handlers.ErrClosed
	}
	out, err := s.cfg.Codec.Append(s.out, payload)
	if err != nil {
		s.CloseFor(BadReply, err)
		return err
	}
	s.out = out
	s.framesOut++
	return nil
}

// Close implements handlers.Conn.
func (s *Session) Close() { s.CloseFor(HandlerClosed, nil) }

// CloseFor marks the connection as closing for r, caused by err (may be
// nil). The first reason recorded wins. The server model still has to write
// what is queued and close the socket.
func (s *Session) CloseFor(r Reason, err error) {
	if s.reason == Open {
		s.reason, s.err = r, err
	}
}

// Closing returns the reason the connection is closing, or Open.
func (s *Session) Closing() Reason { return s.reason }

// Open counts the connection as served and tells a handlers.ConnObserver,
// appending any greeting it replies to out. If the server already serves max
// connections (max > 0) it does neither and marks the session ConnLimit.
func (s *Session) Open(out []byte, max int) []byte {
	s.counters.Accepted()
	if !s.counters.TryOpen(max) {
		s.CloseFor(ConnLimit, nil)
		return out
	}
	s.opened = true
	if o, ok := s.cfg.Handler.(handlers.ConnObserver); ok {
		s.out = out
		o.OpenConn(s)
		out = s.flushCounts()
	}
	return out
}

// Serve decodes every complete frame at the start of in, hands each to the
// handler in order, and appends the encoded replies to out. It returns the
// extended out and n, the number of bytes of in that complete frames used:
// the caller discards exactly those and keeps the rest buffered for the next
// read. The frames handed to the handler alias in.
//
// Serve stops early when the connection starts closing (Closing() != Open):
// a frame over the limit, a bad reply, or the handler's Close. Replies to the
// frames before that are in out and should still be written.
func (s *Session) Serve(in, out []byte) ([]byte, int) {
	s.out = out
	n, frames := 0, int64(0)
	s.need = 0
	codec, handler := s.cfg.Codec, s.cfg.Handler
	for s.reason == Open {
		payload, used, err := codec.Decode(in[n:])
		if err != nil {
			if errors.Is(err, frame.ErrIncomplete) {
				s.need = codec.Need(in[n:])
			} else {
				r := Malformed
				if errors.Is(err, frame.ErrTooLarge) {
					r = FrameTooLarge
				}
				s.CloseFor(r, err)
			}
			break
		}
		n += used
		frames++
		handler.ServeFrame(s, payload)
	}
	if frames > 0 {
		s.counters.framesIn.Add(frames)
	}
	return s.flushCounts(), n
}

// Need returns how many bytes must be buffered in all, after the last Serve
// discarded what it used, before Serve can decode another frame: the model
// may skip Serve until then, and size its read buffer by it. Zero when
// Serve has not run yet.
func (s *Session) Need() int { return s.need }

// flushCounts adds the replies queued since the last call to the counters and
// hands back the reply buffer.
func (s *Session) flushCounts() []byte {
	out := s.out
	s.out = nil
	if s.framesOut > 0 {
		s.counters.framesOut.Add(int64(s.framesOut))
		s.framesOut = 0
	}
	return out
}

// CountAsyncFrame counts one frame sent through the connection's AsyncConn;
// the model counts its bytes with CountWritten. Unlike the other methods,
// CountAsyncFrame and CountWritten are safe from any goroutine.
func (s *Session) CountAsyncFrame() { s.counters.framesOut.Add(1) }

// CountWritten adds n bytes of encoded replies to the BytesOut counter.
func (s *Session) CountWritten(n int) {
	if n > 0 {
		s.counters.bytesOut.Add(int64(n))
	}
}

// Closed finishes the session: it settles the close reason (the one recorded
// by CloseFor, else ReasonFor(ioErr)), tells a handlers.ConnObserver, counts
// the close and logs it at debug level. partial is how many bytes of an
// incomplete frame were still buffered: when the connection ended mid-frame
// (rather than for a protocol error) they are counted as a dropped partial
// frame. It returns the reason.
func (s *Session) Closed(ioErr error, partial int, log *zerolog.Logger) Reason {
	if s.reason == Open {
		s.reason, s.err = ReasonFor(ioErr), ioErr
	}
	switch s.reason {
	case PeerClosed, Reset, Idle, ServerStopping:
	default:
		partial = 0 // junk after a bad frame, or input never served: not a frame
	}
	if partial > 0 {
		s.counters.partialFrames.Add(1)
	}
	if s.opened {
		if o, ok := s.cfg.Handler.(handlers.ConnObserver); ok {
			o.CloseConn(s)
		}
	}
	s.counters.Closed(s.reason, s.opened)
	if e := log.Debug(); e.Enabled() {
		e = e.Uint64("conn", s.id).Stringer("remote", s.remote).Stringer("reason", s.reason)
		if s.err != nil {
			e = e.AnErr("cause", s.err)
		}
		if partial > 0 {
			e = e.Int("partial_frame_bytes", partial)
		}
		e.Msg("connection closed")
	}
	return s.reason
}
