package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

// InteractiveOptions configure Interactive. Only In and Out are required.
type InteractiveOptions struct {
	// Addr is the server, host:port; empty means 127.0.0.1:7007.
	Addr string
	// Codec is the framing; nil means frame.Line{}.
	Codec frame.Codec
	// In supplies the lines to send, each ending in '\n' (the last may not).
	In io.Reader
	// Out receives each reply as it arrives, one per line.
	Out io.Writer
	// Notes receives a line for each input line that cannot be sent in this
	// framing (it is skipped). Nil discards them.
	Notes io.Writer
	// DialTimeout bounds the connection attempt; zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// ShowReads prints a line to Out for each read from the connection,
	// before the replies it completes: its size and its first bytes,
	// Go-quoted ([read 10 bytes: "this is a "]), and the end of the stream
	// ([read 0 bytes: end of stream]). It shows how the server's replies
	// were split or coalesced on their way. Default off.
	ShowReads bool
	// Wait is how long, once In is exhausted, to wait for the server's last
	// replies before giving up; zero means DefaultTimeout. The wait ends
	// sooner when the server closes the connection.
	Wait time.Duration
}

// Interactive connects to a server and sends each line read from In (without
// its '\n') as one frame, printing every reply to Out as soon as it arrives:
// a way to poke a length-prefixed or fixed-size server by hand. A reply is
// printed as is when it is printable text, else Go-quoted ("\x00\x01").
// With raw framing each read is printed as it came, on its own line.
//
// A line that the framing cannot carry (a fixed:N line of another length, an
// empty raw line) is reported to Notes and skipped. At the end of In the
// write side is shut (the server sees EOF) and the remaining replies are
// printed until the server closes the connection or Wait passes; if fewer
// replies came than frames were sent, a note says so. Cancelling ctx closes
// the connection at once. The error is nil unless the connection
// could not be made or failed while lines were still being sent.
func Interactive(ctx context.Context, o InteractiveOptions) error {
	if o.Addr == "" {
		o.Addr = session.DefaultAddr
	}
	if o.Codec == nil {
		o.Codec = frame.Line{}
	}
	if o.Notes == nil {
		o.Notes = io.Discard
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.Wait == 0 {
		o.Wait = DefaultTimeout
	}
	d := net.Dialer{Timeout: o.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		hint := classify(err).Hint()
		if classify(err) == Refused {
			// One connection: a load's advice about its ramp does not apply.
			hint = "nothing accepted the connection: check the server is up on -addr"
		}
		return fmt.Errorf("%w (%s)", err, hint)
	}
	conn := nc.(*net.TCPConn)
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	readDone := make(chan error, 1)
	var replies int // written by printReplies, read after readDone
	go func() { readDone <- printReplies(conn, o.Codec, o.Out, o.ShowReads, &replies) }()

	_, raw := o.Codec.(frame.Raw)
	r := bufio.NewReader(o.In)
	var out []byte
	var sendErr error
	sent := 0
	for sendErr == nil {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
		} else if len(line) == 0 && err != nil {
			break
		}
		if raw && len(line) == 0 {
			fmt.Fprintln(o.Notes, "echoload: an empty line is no bytes at all in raw framing: not sent")
			continue
		}
		out, err = o.Codec.Append(out[:0], line)
		if err != nil {
			fmt.Fprintf(o.Notes, "echoload: line of %d bytes cannot be sent as a %s frame: %v: not sent\n", len(line), o.Codec, err)
			continue
		}
		if _, err := conn.Write(out); err != nil {
			sendErr = err
			break
		}
		sent++
	}
	if sendErr == nil {
		_ = conn.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(o.Wait))
	rerr := <-readDone
	var missing error
	if replies < sent && ctx.Err() == nil {
		// A framing that does not match the server's looks exactly like
		// this, and so does a server that answers nothing (-handler
		// discard). In raw framing a reply is whatever one read returned,
		// so fewer replies than frames is normal there: only a note.
		how := "the server closed the connection"
		if errors.Is(rerr, errWaitOver) {
			how = fmt.Sprintf("no more replies within %v", o.Wait)
		}
		missing = fmt.Errorf("%w: %d frames sent, %d replies received; %s (does -framing match the server's?)", ErrMissingReplies, sent, replies, how)
		if raw {
			fmt.Fprintf(o.Notes, "echoload: %v\n", missing)
			missing = nil
		}
	}
	switch {
	case ctx.Err() != nil:
		return nil
	case sendErr != nil:
		return sendErr
	case rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, net.ErrClosed) && !errors.Is(rerr, errWaitOver):
		return rerr
	}
	return missing
}

// ErrMissingReplies means an interactive session ended with fewer replies
// than the frames it sent.
var ErrMissingReplies = errors.New("load: replies missing")

var errWaitOver = errors.New("load: wait for replies over")

// printReplies decodes frames from conn and prints each on its own line
// until the connection ends; with showReads, each read first.
func printReplies(conn net.Conn, codec frame.Codec, out io.Writer, showReads bool, replies *int) error {
	store := make([]byte, 0, 64<<10)
	buf := store
	chunk := make([]byte, 64<<10)
	w := bufio.NewWriter(out)
	for {
		n, err := conn.Read(chunk)
		if showReads && (n > 0 || errors.Is(err, io.EOF)) {
			w.Write(readNote(chunk[:n]))
		}
		buf = append(buf, chunk[:n]...)
		for len(buf) > 0 {
			p, used, derr := codec.Decode(buf)
			if errors.Is(derr, frame.ErrIncomplete) {
				break
			}
			if derr != nil {
				w.Flush()
				return fmt.Errorf("reply cannot be decoded as %s: %w", codec, derr)
			}
			w.Write(printable(p))
			w.WriteByte('\n')
			*replies++
			buf = buf[used:]
		}
		buf = append(store[:0], buf...) // keep a partial frame at the start
		store = buf[:0]
		if ferr := w.Flush(); ferr != nil {
			return ferr
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return errWaitOver
			}
			if errors.Is(err, io.EOF) && len(buf) > 0 {
				fmt.Fprintf(w, "(connection closed after %d bytes of an incomplete frame: %s)\n", len(buf), printable(buf))
				w.Flush()
			}
			return err
		}
	}
}

// shownRead is how many bytes of a read ShowReads prints.
const shownRead = 64

// readNote is ShowReads' line for a read of p.
func readNote(p []byte) []byte {
	if len(p) == 0 {
		return []byte("[read 0 bytes: end of stream]\n")
	}
	unit := "bytes"
	if len(p) == 1 {
		unit = "byte"
	}
	note := fmt.Appendf(nil, "[read %d %s: %q", len(p), unit, p[:min(len(p), shownRead)])
	if len(p) > shownRead {
		note = append(note, "..."...)
	}
	return append(note, "]\n"...)
}

// printable returns p if it is printable text, else p Go-quoted.
func printable(p []byte) []byte {
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && n <= 1 || !unicode.IsPrint(r) && r != '\t' {
			return strconv.AppendQuote(nil, string(p))
		}
		i += n
	}
	return p
}
