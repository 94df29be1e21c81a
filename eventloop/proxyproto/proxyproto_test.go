package proxyproto

import (
	"errors"
	"flag"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseMode(t *testing.T) {
	for _, m := range []Mode{Off, V1, V2, Any} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m, got, err)
		}
	}
	for _, s := range []string{"", "on", "V1", "v3", "both"} {
		if _, err := ParseMode(s); !errors.Is(err, ErrMode) {
			t.Errorf("ParseMode(%q): %v, want ErrMode", s, err)
		}
	}
}

func TestParseTrust(t *testing.T) {
	tr, err := ParseTrust(" 10.0.0.0/8, 192.0.2.7,2001:db8::/32,::ffff:198.51.100.0/120,, fe80::1 ")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tr.String(), "10.0.0.0/8,192.0.2.7,2001:db8::/32,198.51.100.0/24,fe80::1"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for _, tt := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 1}, true},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3"), Port: 1}, true}, // a dual-stack socket's IPv4 peer
		{&net.TCPAddr{IP: net.IPv4(11, 0, 0, 1)}, false},
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 7)}, true},
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 8)}, false},
		{&net.TCPAddr{IP: net.IPv4(198, 51, 100, 200)}, true},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1::1")}, true},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0"}, true},
		{&net.UDPAddr{IP: net.IPv4(10, 0, 0, 1)}, true},
		{&net.UnixAddr{Name: "/tmp/x"}, false},
		{nil, false},
	} {
		if got := tr.Contains(tt.addr); got != tt.want {
			t.Errorf("Contains(%v) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if (Trust{}).Contains(&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1)}) || (Trust{}).ContainsIP(netip.MustParseAddr("::")) {
		t.Error("the zero Trust trusts someone")
	}
	for _, s := range []string{"10.0.0.0/33", "10.0.0", "example.com", "fe80::1%eth0", "10.0.0.0/8,nope", "1.2.3.4/"} {
		if _, err := ParseTrust(s); !errors.Is(err, ErrTrust) {
			t.Errorf("ParseTrust(%q): %v, want ErrTrust", s, err)
		}
	}
	if tr, err := ParseTrust(""); err != nil || tr.Len() != 0 {
		t.Errorf(`ParseTrust(""): %v, %v; want nobody trusted`, tr, err)
	}
}

// Mode and Trust serve as flags through flag.TextVar.
func TestFlags(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.TextVar(&c.Mode, "proxy-protocol", Off, "")
	fs.TextVar(&c.Trust, "proxy-trust", Trust{}, "")
	if err := fs.Parse([]string{"-proxy-protocol", "v2", "-proxy-trust", "10.0.0.0/8,192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	if c.Mode != V2 || c.Trust.String() != "10.0.0.0/8,192.0.2.1" || c.Check() != nil {
		t.Errorf("parsed %v %v, check %v", c.Mode, c.Trust, c.Check())
	}
	if err := fs.Parse([]string{"-proxy-protocol", "v9"}); err == nil || !strings.Contains(err.Error(), ErrMode.Error()) {
		t.Errorf("bad mode flag: %v", err)
	}
}

func TestConfigCheck(t *testing.T) {
	trust, _ := ParseTrust("10.0.0.1")
	for _, tt := range []struct {
		c    Config
		want error
	}{
		{Config{}, nil},
		{Config{Mode: Any, Trust: trust}, nil},
		{Config{Mode: V1}, ErrNoTrust},
		{Config{Mode: Mode(9), Trust: trust}, ErrMode},
	} {
		if err := tt.c.Check(); !errors.Is(err, tt.want) {
			t.Errorf("%+v: Check() = %v, want %v", tt.c, err, tt.want)
		}
	}
}

func TestTimeout(t *testing.T) {
	for _, tt := range []struct{ frame, want time.Duration }{
		{30 * time.Second, 30 * time.Second}, {time.Second, time.Second}, {0, DefaultTimeout}, {-1, DefaultTimeout},
	} {
		if got := Timeout(tt.frame); got != tt.want {
			t.Errorf("Timeout(%v) = %v, want %v", tt.frame, got, tt.want)
		}
	}
}
