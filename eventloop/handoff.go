package eventloop

import (
	"context"
	"net"
	"os"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// handOffTimeout bounds how long a handed-off socket may take to accept its
// last replies when no WriteTimeout is set.
const handOffTimeout = 30 * time.Second

// handOffs tracks sockets whose last replies are still being written after
// gnet closed the connection, so Shutdown can wait for them or cut them off.
type handOffs struct {
	mu    sync.Mutex
	conns map[*handOff]struct{}
}

type handOff struct {
	fd   int      // duplicate of the socket, until nc takes it over
	nc   net.Conn // set once the writing goroutine runs
	done bool     // closed by Shutdown before it started
}

// handOff arranges for c's unsent replies, data (a copy of gnet's outbound
// buffer), to be written after gnet has closed its descriptor: it
// duplicates the socket now, and once gnet's own last write attempt is over
// (a task queued behind this close) works out how much of data that attempt
// wrote and gives the rest to a goroutine. The socket counts as an open
// connection until then, since it holds a descriptor.
func (s *Server) handOff(c *conn, data []byte) {
	before, err := bytesWritten(c.gc.Fd())
	if err != nil {
		return
	}
	fd, err := c.gc.Dup()
	if err != nil {
		return
	}
	h := &handOff{fd: fd}
	s.handOffs.mu.Lock()
	if s.handOffs.conns == nil {
		s.handOffs.conns = make(map[*handOff]struct{})
	}
	s.handOffs.conns[h] = struct{}{}
	s.handOffs.mu.Unlock()
	s.counters.Hold()
	err = c.loop.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		after, err := bytesWritten(fd)
		if err == nil {
			written := int(min(max(after-before, 0), int64(len(data))))
			data = data[written:]
		}
		s.handOffWG.Go(func() { s.finishHandOff(h, data) })
		return nil
	}))
	if err != nil {
		s.finishHandOff(h, nil)
	}
}

// finishHandOff writes data to the handed-off socket, blocking up to the
// write timeout, and closes it.
func (s *Server) finishHandOff(h *handOff, data []byte) {
	defer s.counters.Release()
	f := os.NewFile(uintptr(h.fd), "handoff")
	nc, err := net.FileConn(f) // its own duplicate, on Go's poller
	f.Close()
	s.handOffs.mu.Lock()
	cut := h.done
	h.nc = nc
	s.handOffs.mu.Unlock()
	if err != nil {
		return
	}
	defer func() {
		s.handOffs.mu.Lock()
		delete(s.handOffs.conns, h)
		s.handOffs.mu.Unlock()
		nc.Close()
	}()
	if cut || len(data) == 0 {
		return
	}
	timeout := s.opts.WriteTimeout
	if timeout <= 0 {
		timeout = handOffTimeout
	}
	_ = nc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := nc.Write(data); err != nil {
		s.log.Debug().Err(err).Int("unsent", len(data)).Msg("replies after close not delivered")
	}
}

// cutHandOffs closes every handed-off socket at once: the shutdown deadline
// has passed.
func (s *Server) cutHandOffs() {
	s.handOffs.mu.Lock()
	defer s.handOffs.mu.Unlock()
	for h := range s.handOffs.conns {
		h.done = true
		if h.nc != nil {
			h.nc.Close()
		}
	}
}
