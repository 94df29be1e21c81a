package session

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Stats is a snapshot of a server's counters.
type Stats struct {
	ConnsOpen  int64 // connections being served now
	ConnsTotal int64 // connections accepted since start, rejected ones included
	FramesIn   int64 // complete frames decoded
	FramesOut  int64 // reply frames queued for writing
	BytesIn    int64 // bytes read from sockets
	BytesOut   int64 // encoded reply bytes queued for writing

	// PartialFrames counts connections that ended with part of a frame
	// buffered (a half-close, reset, idle timeout or shutdown mid-frame);
	// those bytes were dropped unanswered.
	PartialFrames int64

	// AcceptErrors counts failed accept(2) calls (EMFILE, ENFILE and the
	// like); the server backs off and accepts again.
	AcceptErrors int64

	// MemoryHeld is the memory held for clients now (partial frames, unserved
	// input, unsent replies, by buffer capacity): what Config.MaxMemory
	// bounds.
	MemoryHeld int64

	// Closes counts closed connections by reason; reasons never seen are absent.
	Closes map[Reason]int64
}

// Counters are a server's live statistics. The hot path adds to them once per
// read, not once per frame, so they cost a few uncontended atomic adds per
// event. All methods are safe for concurrent use; the zero value is ready.
type Counters struct {
	connsOpen, connsTotal atomic.Int64
	framesIn, framesOut   atomic.Int64
	bytesIn, bytesOut     atomic.Int64
	partialFrames         atomic.Int64
	memoryHeld            atomic.Int64
	acceptErrors          atomic.Int64

	perIPMu sync.Mutex
	perIP   map[netip.Addr]int // connections served per client IP; only with MaxConnsPerIP

	closes [numReasons]atomic.Int64
}

// Accepted counts a newly accepted connection.
func (c *Counters) Accepted() { c.connsTotal.Add(1) }

// AcceptFailed counts a failed accept(2).
func (c *Counters) AcceptFailed() { c.acceptErrors.Add(1) }

// TryOpen counts a connection as served unless max (> 0) are served
// already, and reports whether it did. Concurrent callers never take the
// count past max.
func (c *Counters) TryOpen(max int) bool {
	for {
		n := c.connsOpen.Load()
		if max > 0 && n >= int64(max) {
			return false
		}
		if c.connsOpen.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// tryOpenFrom counts a connection from ip unless max are served from it
// already, and reports whether it did.
func (c *Counters) tryOpenFrom(ip netip.Addr, max int) bool {
	c.perIPMu.Lock()
	defer c.perIPMu.Unlock()
	if c.perIP == nil {
		c.perIP = make(map[netip.Addr]int)
	}
	if c.perIP[ip] >= max {
		return false
	}
	c.perIP[ip]++
	return true
}

// closedFrom uncounts a connection tryOpenFrom counted.
func (c *Counters) closedFrom(ip netip.Addr) {
	c.perIPMu.Lock()
	defer c.perIPMu.Unlock()
	if c.perIP[ip]--; c.perIP[ip] <= 0 {
		delete(c.perIP, ip)
	}
}

// addrIP is the IP of a TCP address, unmapped (an IPv4 client is one
// client whichever way the socket reports it), or the zero Addr.
func addrIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// Closed counts a connection closing for r; served says whether TryOpen
// had counted it.
func (c *Counters) Closed(r Reason, served bool) {
	if served {
		c.connsOpen.Add(-1)
	}
	if r < numReasons {
		c.closes[r].Add(1)
	}
}

// Hold counts a socket the server keeps open after its session closed, to
// finish writing to it, as an open connection (it holds a descriptor), and
// Release stops counting it.
func (c *Counters) Hold()    { c.connsOpen.Add(1) }
func (c *Counters) Release() { c.connsOpen.Add(-1) }

// AddMemory adds delta (negative to give back) to the memory held for
// clients and returns the new total. Each model keeps, per connection, what
// it last added, and adds the difference when its buffers change.
func (c *Counters) AddMemory(delta int64) int64 {
	if delta == 0 {
		return c.memoryHeld.Load()
	}
	return c.memoryHeld.Add(delta)
}

// Memory reports the memory held for clients now.
func (c *Counters) Memory() int64 { return c.memoryHeld.Load() }

// Read counts n bytes read from a socket.
func (c *Counters) Read(n int) { c.bytesIn.Add(int64(n)) }

// Open reports how many connections are being served now.
func (c *Counters) Open() int64 { return c.connsOpen.Load() }

// Snapshot returns the current values. The fields are read one by one, so
// under load they may be a few events apart from each other.
func (c *Counters) Snapshot() Stats {
	s := Stats{
		ConnsOpen:  c.connsOpen.Load(),
		ConnsTotal: c.connsTotal.Load(),
		FramesIn:   c.framesIn.Load(),
		FramesOut:  c.framesOut.Load(),
		BytesIn:    c.bytesIn.Load(),
		BytesOut:   c.bytesOut.Load(),

		PartialFrames: c.partialFrames.Load(),
		MemoryHeld:    c.memoryHeld.Load(),
		AcceptErrors:  c.acceptErrors.Load(),
		Closes:        make(map[Reason]int64),
	}
	for r := range c.closes {
		if n := c.closes[r].Load(); n != 0 {
			s.Closes[Reason(r)] = n
		}
	}
	return s
}
