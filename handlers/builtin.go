package handlers

import (
	"fmt"

	"echoloop/eventloop/frame"
)

// Compile-time checks.
var (
	_ Handler        = Echo{}
	_ Handler        = (*Ack)(nil)
	_ FramingChecker = (*Ack)(nil)
	_ Handler        = Discard{}
)

// Echo replies to every frame with the frame itself.
type Echo struct{}

// ServeFrame implements Handler.
func (Echo) ServeFrame(c Conn, frame []byte) { _ = c.Reply(frame) }

// Ack replies to every frame with one fixed message, whatever the frame says:
// the textbook "Message received!" server.
type Ack struct{ msg []byte }

// NewAck returns an Ack answering msg; empty means DefaultAckReply.
func NewAck(msg string) *Ack {
	if msg == "" {
		msg = DefaultAckReply
	}
	return &Ack{msg: []byte(msg)}
}

// ServeFrame implements Handler.
func (a *Ack) ServeFrame(c Conn, _ []byte) { _ = c.Reply(a.msg) }

// CheckFraming implements FramingChecker.
func (a *Ack) CheckFraming(c frame.Codec) error {
	if _, err := c.Append(nil, a.msg); err != nil {
		return fmt.Errorf("handlers: ack reply %q (%d bytes) cannot be sent as a %s frame: %w",
			a.msg, len(a.msg), c, err)
	}
	return nil
}

// Discard reads every frame and answers nothing.
type Discard struct{}

// ServeFrame implements Handler.
func (Discard) ServeFrame(Conn, []byte) {}
