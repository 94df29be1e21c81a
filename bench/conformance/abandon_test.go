package conformance

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"echoloop/bench/servertest"
	"echoloop/eventloop/session"
)

// TestAttackSlowConsumerIsReset: a client that sends frames and never reads
// a reply is closed as a slow consumer, and is told so at once, though it
// reads nothing. The close gives up on the replies queued for it, so it
// resets the connection. A plain close would queue its FIN behind those
// replies, which the client's closed window never lets through: the
// client's side would stay established, and the server's kernel would keep
// the replies and retry for minutes.
func TestAttackSlowConsumerIsReset(t *testing.T) {
	eachModel(t, func(t *testing.T, m string) {
		srv, _ := startLogged(t, m, session.Config{MaxPending: 64 << 10, WriteTimeout: 300 * time.Millisecond})
		conn := servertest.Dial(t, srv.Addr())
		_ = conn.SetReadBuffer(4 << 10)
		var stream []byte
		for i := 0; len(stream) < 1_000_000; i++ {
			stream = fmt.Appendf(stream, "%08d small frame from a peer that never reads its replies\n", i)
		}
		// Write once, and then nothing: a write after the close would
		// draw a reset from the server's kernel whatever the close did.
		_ = conn.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
		go func() { _, _ = conn.Write(stream) }()
		servertest.Until(t, 20*time.Second, "closed as a slow consumer", func() (bool, string) {
			st := srv.Stats()
			return st.Closes[session.SlowConsumer] == 1, fmt.Sprintf("closes %v", st.Closes)
		})
		raw, err := conn.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		servertest.Until(t, 10*time.Second, "the client's side to learn of the close without reading", func() (bool, string) {
			var info *unix.TCPInfo
			var ierr error
			if err := raw.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
				return false, fmt.Sprintf("TCP_INFO: %v %v", err, ierr)
			}
			return info.State != unix.BPF_TCP_ESTABLISHED, fmt.Sprintf("TCP state %d (1: established)", info.State)
		})
	})
}
