package eventloop

import (
	"runtime"
	"testing"
)

func TestSpareP(t *testing.T) {
	was := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(was)

	t.Setenv("GOMAXPROCS", "")
	if got := SpareP(); got != was+1 || runtime.GOMAXPROCS(0) != was+1 {
		t.Errorf("SpareP() = %d with GOMAXPROCS %d, want %d", got, runtime.GOMAXPROCS(0), was+1)
	}
	runtime.GOMAXPROCS(was)
	t.Setenv("GOMAXPROCS", "3")
	if got := SpareP(); got != was || runtime.GOMAXPROCS(0) != was {
		t.Errorf("with GOMAXPROCS set SpareP() = %d and changed GOMAXPROCS to %d; want it left at %d", got, runtime.GOMAXPROCS(0), was)
	}
}
