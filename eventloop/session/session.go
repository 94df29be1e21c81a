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

// Shared is what every session of one server refers to: its prepared
// configuration, its counters and its logger. A server makes one and keeps it
// for as long as any of its sessions lives; nothing in it changes meanwhile.
type Shared struct {
	Config   *Config
	Counters *Counters
	Log      *zerolog.Logger
}

// Session is one connection's framing, dispatch and accounting state.
//
// A Session is driven by one goroutine at a time (the event loop that owns
// the connection, or the connection's own goroutine): Open, Serve and Closed
// must not run concurrently. The model's connection type embeds it and adds
// RemoteAddr and Async to make a handlers.Conn, which it passes to Open and
// Serve; the handler's calls to Reply and Close land here.
//
// A server holds one per connection, so it is kept small (48 bytes on 64-bit
// platforms): what every session shares is behind one pointer, and what only
// a closing session needs is allocated when it starts closing.
type Session struct {
	id        uint64
	sh        *Shared
	out       *[]byte  // the caller's reply buffer during Open and Serve; nil otherwise
	closing   *closing // set by CloseFor; nil while the connection is open
	need      int32    // bytes a partial frame needs buffered in all; see Need
	scanned   int32    // bytes of the partial frame the codec has seen; see Serve
	framesOut int32    // replies queued during the current call
	opened    bool     // counted by Counters.TryOpen
	perIP     bool     // counted against MaxConnsPerIP
	paused    bool     // the handler paused the connection; see Pause
	early     bool     // a Resume came before its Pause; see Resume
}

// closing is why a connection is closing and what caused it.
type closing struct {
	reason Reason
	err    error
}

// Init prepares s for a new connection of the server sh describes.
func (s *Session) Init(sh *Shared) { *s = Session{id: NextID(), sh: sh} }

// ID implements handlers.Conn.
func (s *Session) ID() uint64 { return s.id }

// Codec returns the connection's codec; it is immutable, so any goroutine
// may use it to encode frames for the connection.
func (s *Session) Codec() frame.Codec { return s.sh.Config.Codec }

// Reply implements handlers.Conn.
func (s *Session) Reply(payload []byte) error {
	if s.closing != nil || s.out == nil {
		return handlers.ErrClosed
	}
	out, err := s.sh.Config.Codec.Append(*s.out, payload)
	if err != nil {
		s.CloseFor(BadReply, err)
		return err
	}
	*s.out = out
	s.framesOut++
	return nil
}

// Close implements handlers.Conn.
func (s *Session) Close() { s.CloseFor(HandlerClosed, nil) }

// Pause implements handlers.Conn: Serve serves no more frames until
// Resume. The model keeps the rest of the input meanwhile.
func (s *Session) Pause() {
	if s.early {
		s.early = false // its Resume is in already
		return
	}
	s.paused = true
}

// Paused says whether the handler has paused the connection.
func (s *Session) Paused() bool { return s.paused }

// Resume ends a pause: the model calls it, on the goroutine that drives the
// session, when the handler's AsyncConn.Resume reaches it. A Resume with no
// pause in effect ends the next one as soon as it starts.
func (s *Session) Resume() {
	if s.paused {
		s.paused = false
	} else {
		s.early = true
	}
}

// CloseFor marks the connection as closing for r, caused by err (may be
// nil). The first reason recorded wins. The server model still has to write
// what is queued and close the socket.
func (s *Session) CloseFor(r Reason, err error) {
	if s.closing == nil {
		s.closing = &closing{reason: r, err: err}
	}
}

// Closing returns the reason the connection is closing, or Open.
func (s *Session) Closing() Reason {
	if s.closing == nil {
		return Open
	}
	return s.closing.reason
}

// Open counts the connection as served and tells a handlers.ConnObserver,
// whose greeting replies are appended to *out. If the server already serves
// its MaxConns it does neither and marks the session ConnLimit, and if it
// serves MaxConnsPerIP from c.RemoteAddr()'s IP, TooManyFromAddr. c is the
// model's connection, handed to the handler; its RemoteAddr must not change
// until Closed, which is given the same address.
func (s *Session) Open(c handlers.Conn, out *[]byte) {
	s.sh.Counters.Accepted()
	if !s.sh.Counters.TryOpen(s.sh.Config.MaxConns) {
		s.CloseFor(ConnLimit, nil)
		return
	}
	if max := s.sh.Config.MaxConnsPerIP; max > 0 {
		if !s.sh.Counters.tryOpenFrom(addrIP(c.RemoteAddr()), max) {
			s.sh.Counters.connsOpen.Add(-1)
			s.CloseFor(TooManyFromAddr, nil)
			return
		}
		s.perIP = true
	}
	s.opened = true
	if o, ok := s.sh.Config.Handler.(handlers.ConnObserver); ok {
		s.out = out
		o.OpenConn(c)
		s.flushCounts()
	}
}

// Refused reports whether Open refused the connection (ConnLimit,
// TooManyFromAddr), and if so warns on log (a RejectLogger) with remote and
// the limit: the model then closes the socket at once.
func (s *Session) Refused(log *zerolog.Logger, remote net.Addr) bool {
	cfg := s.sh.Config
	switch s.Closing() {
	case ConnLimit:
		log.Warn().Stringer("remote", remote).Int("max_conns", cfg.MaxConns).
			Msg("connection refused: at the connection limit")
	case TooManyFromAddr:
		log.Warn().Stringer("remote", remote).Int("max_conns_per_ip", cfg.MaxConnsPerIP).
			Msg("connection refused: too many from this address")
	default:
		return false
	}
	return true
}

// Serve decodes every complete frame at the start of in, hands each to the
// handler in order (with c, the model's connection), and appends the encoded
// replies to *out. It returns n, the number of bytes of in that complete
// frames used: the caller discards exactly those and keeps the rest buffered
// for the next read. The frames handed to the handler alias in.
//
// Serve stops early when the connection starts closing (Closing() != Open):
// a frame over the limit, a bad reply, or the handler's Close. Replies to the
// frames before that are in *out and should still be written. It also stops
// after a frame whose handler paused the connection (Paused), and serves
// nothing while paused.
//
// in must start with the bytes the previous Serve left unused (the partial
// frame, unchanged), followed by what arrived since: Serve resumes a
// codec's scan for the frame's end where the previous call stopped, so a
// frame costs time linear in its size however many reads it takes.
func (s *Session) Serve(c handlers.Conn, in []byte, out *[]byte) int {
	s.out = out
	n, frames := 0, int64(0)
	s.need = 0
	scanned := int(s.scanned)
	codec, handler := s.sh.Config.Codec, s.sh.Config.Handler
	for s.closing == nil && !s.paused {
		if n == len(in) {
			// Every codec decodes an empty buffer as ErrIncomplete: a read
			// that ends on a frame boundary, the usual case, skips asking.
			s.need = int32(min(codec.Need(in[n:]), 1<<31-1))
			s.scanned = 0
			break
		}
		payload, used, err := frame.DecodeFrom(codec, in[n:], scanned)
		scanned = 0
		if err != nil {
			if err == frame.ErrIncomplete || errors.Is(err, frame.ErrIncomplete) {
				s.need = int32(min(codec.Need(in[n:]), 1<<31-1))
				s.scanned = int32(min(len(in)-n, 1<<31-1))
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
		s.scanned = 0
		handler.ServeFrame(c, payload)
	}
	if frames > 0 {
		s.sh.Counters.framesIn.Add(frames)
		if s.sh.Config.Tracer != nil {
			s.traceFrames(c, in[:n], int(frames))
		}
	}
	s.flushCounts()
	return n
}

// Need returns how many bytes must be buffered in all, after the last Serve
// discarded what it used, before Serve can decode another frame: the model
// may skip Serve until then, and size its read buffer by it. Zero before
// Serve has run.
func (s *Session) Need() int { return int(s.need) }

// flushCounts adds the replies queued during the call to the counters and
// forgets the caller's buffer.
func (s *Session) flushCounts() {
	s.out = nil
	if s.framesOut > 0 {
		s.sh.Counters.framesOut.Add(int64(s.framesOut))
		s.framesOut = 0
	}
}

// CountAsyncFrames counts n frames sent through the connection's
// AsyncConn; the model counts their bytes with CountWritten. Unlike the
// other methods, CountAsyncFrames and CountWritten are safe from any
// goroutine.
func (s *Session) CountAsyncFrames(n int) { s.sh.Counters.framesOut.Add(int64(n)) }

// CountWritten adds n bytes of encoded replies to the BytesOut counter.
func (s *Session) CountWritten(n int) {
	if n > 0 {
		s.sh.Counters.bytesOut.Add(int64(n))
	}
}

// Closed finishes the session: it settles the close reason (the one recorded
// by CloseFor, else ReasonFor(ioErr)), tells a handlers.ConnObserver (c is
// the model's connection), counts the close and logs it at debug level with
// remote. partial is how many bytes of an incomplete frame were still
// buffered: when the connection ended mid-frame (rather than for a protocol
// error) they are counted as a dropped partial frame. It returns the reason.
func (s *Session) Closed(c handlers.Conn, remote net.Addr, ioErr error, partial int) Reason {
	if s.closing == nil {
		s.closing = &closing{reason: ReasonFor(ioErr), err: ioErr}
	}
	r, cause := s.closing.reason, s.closing.err
	switch r {
	case PeerClosed, Reset, Idle, ServerStopping:
	default:
		partial = 0 // junk after a bad frame, or input never served: not a frame
	}
	if partial > 0 {
		s.sh.Counters.partialFrames.Add(1)
	}
	if s.opened {
		if o, ok := s.sh.Config.Handler.(handlers.ConnObserver); ok {
			o.CloseConn(c)
		}
	}
	if s.perIP {
		s.sh.Counters.closedFrom(addrIP(remote))
	}
	// Logged before it is counted: whoever sees the close in Stats finds
	// its log line written.
	if e := s.sh.Log.Debug(); e.Enabled() {
		e = e.Uint64("conn", s.id).Stringer("remote", remote).Stringer("reason", r)
		if cause != nil {
			e = e.AnErr("cause", cause)
		}
		if partial > 0 {
			e = e.Int("partial_frame_bytes", partial)
		}
		e.Msg("connection closed")
	}
	s.sh.Counters.Closed(r, s.opened)
	return r
}
