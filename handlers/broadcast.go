package handlers

import "sync"

var (
	_ Handler      = (*Broadcast)(nil)
	_ ConnObserver = (*Broadcast)(nil)
)

// Broadcast is a chat server: every frame from one connection is sent to
// every other open connection, in the server's framing (and back to its
// sender too when EchoSelf is set). Each receiver gets one sender's frames
// in the order that sender sent them; frames from different senders
// interleave as they arrive.
//
// A frame goes out through each receiver's AsyncConn.Send, which queues it
// and never waits for the receiver's socket: the server writes all the
// frames queued for one receiver together, and a receiver that does not
// read is closed as "slow consumer" once its queue passes MaxPending,
// without holding up the sender or anyone else.
//
// Broadcast is safe for concurrent use: on the goroutine model every
// connection serves its frames on its own goroutine.
type Broadcast struct {
	echoSelf bool

	// mu guards peers and index. ServeFrame holds it for reading while it
	// queues a frame for every peer; Send does not block, so no lock is ever
	// held during a socket write.
	mu    sync.RWMutex
	peers []peer         // open connections, in no particular order
	index map[uint64]int // connection ID -> position in peers
}

type peer struct {
	id uint64
	ac AsyncConn
}

// NewBroadcast returns a Broadcast; echoSelf sends each frame back to its
// sender as well.
func NewBroadcast(echoSelf bool) *Broadcast {
	return &Broadcast{echoSelf: echoSelf, index: make(map[uint64]int)}
}

// OpenConn implements ConnObserver: the connection joins the room.
func (b *Broadcast) OpenConn(c Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.index[c.ID()] = len(b.peers)
	b.peers = append(b.peers, peer{c.ID(), c.Async()})
}

// CloseConn implements ConnObserver: the connection leaves the room.
func (b *Broadcast) CloseConn(c Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i, ok := b.index[c.ID()]
	if !ok {
		return
	}
	last := len(b.peers) - 1
	b.peers[i] = b.peers[last]
	b.index[b.peers[i].id] = i
	b.peers[last] = peer{} // drop the handle
	b.peers = b.peers[:last]
	delete(b.index, c.ID())
}

// ServeFrame implements Handler. The sender's own copy, with EchoSelf, is
// a Reply, written with its other replies.
func (b *Broadcast) ServeFrame(c Conn, frame []byte) {
	if b.echoSelf {
		_ = c.Reply(frame)
	}
	id := c.ID()
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, p := range b.peers {
		if p.id != id {
			_ = p.ac.Send(frame) // ErrClosed: it is leaving; nothing to do
		}
	}
}

// Peers returns how many connections are in the room.
func (b *Broadcast) Peers() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.peers)
}
