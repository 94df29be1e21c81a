package netserver

import (
	"cmp"
	"slices"
	"time"
)

// Memory held for clients is accounted per connection, as the server really
// holds it: the capacity of the read buffer (own or lent), of the
// connection's own buffer kept aside during a burst, and of the reply buffer
// (own or lent), plus the outbox: frames sent through the AsyncConn and not
// yet written (see async.go). Each connection keeps in held what it last
// added to the server's total (session.Counters.AddMemory) and adds only the
// difference when its buffers change, so the total is always current and
// costs one atomic add per change, none per read in the steady state.
//
// The fixed initial buffer counts, since it is memory too: 19,000 idle
// connections hold about 19,000 × 4 KiB (at most 16 KiB each after a burst),
// far below the 1 GiB default budget, so they never cause an eviction.
//
// When the total passes Config.MemoryBudget, an eviction pass closes the
// connections holding the most, with reason MemoryLimit, until what the
// others hold is back within the budget. Their goroutines are told through
// memState and woken by read and write deadlines in the past; each records
// the reason, closes its socket and gives its memory back. Until then the
// bytes they hold are counted in Server.evicting, so that a pass does not
// evict more for memory already on its way out.

// Memory states of a connection, in conn.memState.
const (
	memActive   int32 = iota // served; may be chosen by an eviction pass
	memEvicted               // chosen: its goroutine closes it as MemoryLimit
	memReleased              // closed; holds nothing and cannot be chosen
)

// account brings the server's total up to date with the buffers c holds
// now, and starts an eviction pass if that takes the total over the budget.
// Only c's goroutine calls it.
func (c *conn) account() {
	held := int64(cap(c.buf) + cap(c.ownIn) + cap(c.out) + cap(c.ownOut))
	if delta := held - c.held.Load(); delta != 0 {
		c.held.Store(held)
		c.srv.addMemory(delta)
	}
}

// evicted says whether an eviction pass chose c. Safe from any goroutine.
func (c *conn) evicted() bool { return c.memState.Load() == memEvicted }

// releaseMemory gives back to the total what c still has counted and stops c
// from being chosen by an eviction pass; the buffers are gone already (see
// dropBuffers).
func (c *conn) releaseMemory() {
	c.account()
	if c.memState.Swap(memReleased) == memEvicted {
		c.srv.evicting.Add(-c.evictHeld.Load())
	}
}

// holding is what c holds now, as an eviction pass ranks it. Safe from any
// goroutine.
func (c *conn) holding() int64 { return c.held.Load() + c.sendHeld.Load() }

// evict marks c for closing as MemoryLimit and wakes its goroutine from a
// blocking read or write; held is what c holds, counted in Server.evicting
// until c gives it back. It reports false if c was already chosen or has
// closed. Safe from any goroutine.
func (c *conn) evict(held int64) bool {
	c.evictHeld.Store(held) // read by releaseMemory only after it sees memEvicted
	if !c.memState.CompareAndSwap(memActive, memEvicted) {
		return false
	}
	c.srv.evicting.Add(held)
	now := time.Now()
	_ = c.nc.SetReadDeadline(now)
	_ = c.nc.SetWriteDeadline(now)
	c.poke()
	return true
}

// addMemory adds delta to the memory held for clients and, when it grew,
// checks the budget. Safe from any goroutine.
func (s *Server) addMemory(delta int64) {
	total := s.counters.AddMemory(delta)
	if delta <= 0 {
		return
	}
	budget := s.opts.MemoryBudget()
	if budget > 0 && total-s.evicting.Load() > budget {
		s.evict(budget)
	}
}

// victim is a connection an eviction pass considers, with what it held
// when the pass looked.
type victim struct {
	c    *conn
	held int64
}

// evict closes the connections holding the most, with reason MemoryLimit,
// until the rest hold no more than budget. One pass runs at a time; a pass
// started while another ran finds the excess already covered. Each close is
// logged at warn level, at most about one line a second after a burst.
func (s *Server) evict(budget int64) {
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	excess := s.counters.Memory() - s.evicting.Load() - budget
	if excess <= 0 {
		return
	}
	vs := s.heaviest()
	defer func() { clear(vs); s.victims = vs[:0] }() // keep no closed connection alive
	for _, v := range vs {
		if excess <= 0 {
			break
		}
		if !v.c.evict(v.held) {
			continue
		}
		excess -= v.held
		s.memLog.Warn().Uint64("conn", v.c.ID()).Stringer("remote", v.c.RemoteAddr()).
			Int64("held", v.held).Int64("max_memory", budget).
			Msg("closing connection: over the memory budget")
	}
}

// heaviest lists the connections that hold memory and are not yet chosen,
// the largest first. Called with evictMu held: the list reuses the
// server's scratch slice.
func (s *Server) heaviest() []victim {
	vs := s.victims[:0]
	s.mu.Lock()
	for c := range s.conns {
		if h := c.holding(); h > 0 && c.memState.Load() == memActive {
			vs = append(vs, victim{c, h})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(vs, func(a, b victim) int { return cmp.Compare(b.held, a.held) })
	return vs
}
