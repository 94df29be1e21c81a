package load

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"echoloop/eventloop/session"
)

// sourceAddrs returns the n source addresses first, first+1, ... (counting
// on through 127.0.1.0 past 127.0.0.255; first nil means 127.0.0.1), or nil
// for n == 0.
func sourceAddrs(n int, first net.IP, raddr *net.TCPAddr) ([]net.IP, error) {
	if n == 0 {
		if first != nil {
			return nil, fmt.Errorf("%w: first source %s needs sources", ErrInvalid, first)
		}
		return nil, nil
	}
	if n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("%w: sources %d: want 1 to %d", ErrInvalid, n, 1<<20)
	}
	if ip4 := raddr.IP.To4(); ip4 == nil || !ip4.IsLoopback() {
		return nil, fmt.Errorf("%w: sources spread connections over 127.0.0.1..127.0.0.N and need a 127.x.x.x server address, not %s", ErrInvalid, raddr.IP)
	}
	base := uint32(127<<24 + 1)
	if first != nil {
		ip4 := first.To4()
		if ip4 == nil || !ip4.IsLoopback() {
			return nil, fmt.Errorf("%w: first source %s: want a 127.x.x.x address", ErrInvalid, first)
		}
		base = binary.BigEndian.Uint32(ip4)
	}
	if last := uint64(base) + uint64(n) - 1; last > 0x7fffffff { // 127.255.255.255
		return nil, fmt.Errorf("%w: sources %d from %s run past 127.255.255.255", ErrInvalid, n, first)
	}
	ips := make([]net.IP, n)
	for i := range ips {
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, base+uint32(i))
		ips[i] = ip
	}
	return ips, nil
}

// checkLimits raises the fd limit to its hard limit and refuses a run that
// cannot fit it, or that has fewer local ports than connections.
func (c *config) checkLimits() error {
	lim, err := session.RaiseFDLimit()
	if err != nil {
		return err
	}
	c.fdLimit = lim
	if need := uint64(c.Conns) + FDReserve; need > lim.Cur {
		return fmt.Errorf("%w: %d connections need %d descriptors and the limit is %d (hard limit %d): raise it (ulimit -n) or lower the connection count to %d",
			ErrFDLimit, c.Conns, need, lim.Cur, lim.Max, max(int(lim.Cur)-FDReserve, 0))
	}
	c.portSpan = localPorts()
	srcs := max(len(c.sources), 1)
	if c.portSpan > 0 && c.Conns > srcs*c.portSpan {
		return fmt.Errorf("%w: %d connections to one server address need more than the %d local ports of %d source address(es): spread them with %d or more sources",
			ErrPorts, c.Conns, c.portSpan, srcs, (c.Conns+c.portSpan-1)/c.portSpan)
	}
	return nil
}

// localPorts is the size of the kernel's ephemeral port range, 0 if unknown.
func localPorts() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || hi < lo {
		return 0
	}
	return hi - lo + 1
}
