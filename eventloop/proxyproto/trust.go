package proxyproto

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Trust is a list of address ranges allowed to send a PROXY header. The zero
// value trusts nobody. A Trust is immutable once parsed and safe for
// concurrent use.
type Trust struct {
	prefixes []netip.Prefix
}

// ParseTrust parses a comma-separated list of CIDR prefixes and plain IP
// addresses ("10.0.0.0/8,192.0.2.7,2001:db8::/32"); spaces around entries
// are ignored, and an empty string trusts nobody. An IPv4-mapped IPv6 entry
// is taken as the IPv4 address or range it maps, since the server compares
// peers in their unmapped form.
func ParseTrust(s string) (Trust, error) {
	var t Trust
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		p, err := parsePrefix(entry)
		if err != nil {
			return Trust{}, fmt.Errorf("%w %q: want an IP address or CIDR prefix", ErrTrust, entry)
		}
		t.prefixes = append(t.prefixes, p)
	}
	return t, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, err
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a.Zone() != "" {
			return netip.Prefix{}, ErrTrust
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// Len is the number of entries.
func (t Trust) Len() int { return len(t.prefixes) }

// Contains reports whether addr, a *net.TCPAddr, *net.UDPAddr or *net.IPAddr
// (what a socket reports as its peer), is in a trusted range. Any other
// address, nil included, is not trusted.
func (t Trust) Contains(addr net.Addr) bool {
	var ip net.IP
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	case *net.IPAddr:
		ip = a.IP
	}
	a, ok := netip.AddrFromSlice(ip)
	return ok && t.ContainsIP(a)
}

// ContainsIP reports whether ip, compared unmapped and without its zone, is
// in a trusted range.
func (t Trust) ContainsIP(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, p := range t.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// String lists the entries as ParseTrust accepts them, single addresses
// without their /32 or /128.
func (t Trust) String() string {
	var b strings.Builder
	for i, p := range t.prefixes {
		if i > 0 {
			b.WriteByte(',')
		}
		if p.IsSingleIP() {
			b.WriteString(p.Addr().String())
		} else {
			b.WriteString(p.String())
		}
	}
	return b.String()
}

// MarshalText implements encoding.TextMarshaler, so a Trust serves as a flag
// with flag.TextVar.
func (t Trust) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseTrust.
func (t *Trust) UnmarshalText(text []byte) error {
	v, err := ParseTrust(string(text))
	if err != nil {
		return err
	}
	*t = v
	return nil
}
