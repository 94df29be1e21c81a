package load

import (
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestClassify(t *testing.T) {
	wrap := func(op string, errno syscall.Errno) error {
		return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)}
	}
	tests := []struct {
		err  error
		want Kind
	}{
		{wrap("dial", syscall.ECONNREFUSED), Refused},
		{wrap("read", syscall.ECONNRESET), Reset},
		{wrap("write", syscall.EPIPE), Reset},
		{fmt.Errorf("connect: %w", syscall.ECONNREFUSED), Refused},
		{fmt.Errorf("read: %w: closed", io.EOF), Closed},
		{fmt.Errorf("%w: 1 frame in flight", errTimeout), Timeout},
		{errConnectTimeout, Timeout},
		{os.ErrDeadlineExceeded, Timeout},
		{wrap("socket", syscall.EMFILE), EMFILE},
		{fmt.Errorf("socket: %w", syscall.ENFILE), EMFILE},
		{wrap("dial", syscall.EADDRNOTAVAIL), EADDRNOTAVAIL},
		{fmt.Errorf("bind source address: %w", syscall.EADDRNOTAVAIL), EADDRNOTAVAIL},
		{wrap("dial", syscall.EHOSTUNREACH), Other},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got != tt.want {
			t.Errorf("classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
	for _, k := range []Kind{EMFILE, EADDRNOTAVAIL} {
		if k.Hint() == "" {
			t.Errorf("%s has no hint", k)
		}
	}
	if EMFILE.Hint() == "" || EADDRNOTAVAIL.Hint() != "out of local ports: spread connections over more source addresses with -sources" {
		t.Errorf("hints: %q, %q", EMFILE.Hint(), EADDRNOTAVAIL.Hint())
	}
}
