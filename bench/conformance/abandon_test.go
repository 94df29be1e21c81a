package conformance

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"echoloop/bench/servertest"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// TestAttackSlowConsumerIsReset: a client that sends frames and never reads
// a reply is closed as a slow consumer, and is told so at once, though it
// reads nothing. The close gives up on the replies queued for it, so it
// resets the connection. A plain close would queue its FIN behind those
// replies, which the client's closed window never lets through: the
// client's side would stay open (established, or after its own half-close
// FIN-WAIT-2), and the server's kernel would keep the replies and retry for
// minutes. The work case half-closes after its
// frames, so that on the event loop the replies the handler still owes are
// being written on a hand-off when the server gives up on them.
func TestAttackSlowConsumerIsReset(t *testing.T) {
	cases := []struct {
		name      string
		handler   func() handlers.Handler
		size      int  // bytes of frames sent
		frame     int  // bytes per frame
		halfClose bool // after writing them
	}{
		{"echo", func() handlers.Handler { return handlers.Echo{} }, 1_000_000, 64, false},
		// Work answers a connection's frames one at a time, 2 ms each, so
		// most replies come after the EOF, and there are more of them than
		// the kernel's buffers take in from a peer that does not read (a
		// few MB here): on the event loop they are owed after the EOF, and
		// written on a hand-off when the server gives up on them.
		{"work, half-closed", func() handlers.Handler {
			h, _ := handlers.NewWork(handlers.WorkOptions{Work: 2 * time.Millisecond})
			return h
		}, 6_000_000, 8 << 10, true},
	}
	eachModel(t, func(t *testing.T, m string) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				srv, _ := startLogged(t, m, session.Config{
					Handler: tc.handler(), MaxPending: 64 << 10, WriteTimeout: 300 * time.Millisecond,
				})
				conn := servertest.Dial(t, srv.Addr())
				_ = conn.SetReadBuffer(4 << 10)
				var stream []byte
				for i := 0; len(stream) < tc.size; i++ {
					line := fmt.Appendf(nil, "%08d frame from a peer that never reads its replies ", i)
					stream = append(append(stream, line...), bytes.Repeat([]byte{'.'}, tc.frame-len(line)-1)...)
					stream = append(stream, '\n')
				}
				// Write once, and then nothing: a write after the close
				// would draw a reset from the server's kernel whatever the
				// close did.
				_ = conn.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
				go func() {
					if _, err := conn.Write(stream); err == nil && tc.halfClose {
						_ = conn.CloseWrite()
					}
				}()
				servertest.Until(t, 20*time.Second, "closed as a slow consumer", func() (bool, string) {
					st := srv.Stats()
					return st.Closes[session.SlowConsumer] == 1, fmt.Sprintf("closes %v, read %d bytes, %d frames in, %d out, %d conns open", st.Closes, st.BytesIn, st.FramesIn, st.FramesOut, st.ConnsOpen)
				})
				raw, err := conn.SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				servertest.Until(t, 10*time.Second, "the client's side to be reset without reading", func() (bool, string) {
					var info *unix.TCPInfo
					var ierr error
					if err := raw.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
						return false, fmt.Sprintf("TCP_INFO: %v %v", err, ierr)
					}
					// Closed: reset. A FIN queued behind the replies would
					// leave it established (or, half-closed, in FIN-WAIT-2).
					return info.State == unix.BPF_TCP_CLOSE, fmt.Sprintf("TCP state %d (7: closed)", info.State)
				})
			})
		}
	})
}
