package load_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"echoloop/bench/load"
	"echoloop/bench/model"
	"echoloop/eventloop/frame"
)

func TestPayload(t *testing.T) {
	p, err := load.NewPayload(40)
	if err != nil {
		t.Fatal(err)
	}
	a := p.Append(nil, 7, 123456)
	if len(a) != 40 || bytes.IndexByte(a, '\n') >= 0 {
		t.Fatalf("payload %q: want 40 printable bytes without a newline", a)
	}
	if id, seq, ok := load.Header(a); !ok || id != 7 || seq != 123456 {
		t.Errorf("Header = %d, %d, %v; want 7, 123456", id, seq, ok)
	}
	if !p.Verify(a, 7, 123456) {
		t.Error("a payload does not verify against itself")
	}
	for _, tt := range []struct {
		name string
		id   uint32
		seq  uint64
	}{{"other conn", 8, 123456}, {"other seq", 7, 123457}} {
		if p.Verify(a, tt.id, tt.seq) {
			t.Errorf("%s: verified", tt.name)
		}
		if b := p.Append(nil, tt.id, tt.seq); bytes.Equal(a[load.MinSize:], b[load.MinSize:]) {
			t.Errorf("%s: same filler, so a swapped body would pass unseen", tt.name)
		}
	}
	for i := range a {
		bad := bytes.Clone(a)
		bad[i] ^= 1
		if p.Verify(bad, 7, 123456) {
			t.Fatalf("a flipped bit at byte %d verified", i)
		}
	}
	if p.Verify(a[:39], 7, 123456) || p.Verify(append(bytes.Clone(a), 'x'), 7, 123456) {
		t.Error("a payload of the wrong length verified")
	}
	if _, err := load.NewPayload(load.MinSize - 1); !errors.Is(err, load.ErrInvalid) {
		t.Errorf("NewPayload(%d) = %v, want ErrInvalid", load.MinSize-1, err)
	}
}

func TestPayloadVerifyAllocs(t *testing.T) {
	p, _ := load.NewPayload(64)
	a := p.Append(nil, 3, 9)
	if n := testing.AllocsPerRun(100, func() { p.Verify(a, 3, 9) }); n != 0 {
		t.Errorf("Verify allocates %.0f times", n)
	}
}

func TestBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts load.Options
		err  error
		want string
	}{
		{"size too small", load.Options{Size: 9}, load.ErrInvalid, "size 9 is under 10 bytes"},
		{"fixed too small", load.Options{Codec: frame.Fixed{Size: 8}}, load.ErrInvalid, "framing fixed:8 is under 10 bytes"},
		{"fixed size disagrees", load.Options{Codec: frame.Fixed{Size: 16}, Size: 64}, load.ErrInvalid, "disagrees with the framing fixed:16"},
		{"over the line limit", load.Options{Codec: frame.Line{Max: 100}, Size: 200}, load.ErrInvalid, "over the line framing's limit of 100"},
		{"bad addr", load.Options{Addr: "nowhere"}, load.ErrInvalid, `address "nowhere"`},
		{"bad client", load.Options{Client: "threads"}, load.ErrInvalid, `client "threads"`},
		{"loops for goroutine", load.Options{Client: load.Goroutine, Loops: 2}, load.ErrInvalid, "loops applies to the epoll client"},
		{"idle with rate", load.Options{Idle: true, Rate: 10}, load.ErrInvalid, "idle mode"},
		{"hold without idle", load.Options{Hold: time.Second}, load.ErrInvalid, "hold and gate are for idle mode"},
		{"gate without idle", load.Options{Gate: func(context.Context, string) {}}, load.ErrInvalid, "hold and gate are for idle mode"},
		{"negative rate", load.Options{Rate: -1}, load.ErrInvalid, "rate -1"},
		{"sources off loopback", load.Options{Addr: "10.0.0.1:7", Sources: 2}, load.ErrInvalid, "need a 127.x.x.x server address"},
		{"first source without sources", load.Options{FirstSource: net.IPv4(127, 0, 0, 2)}, load.ErrInvalid, "needs sources"},
		{"first source off loopback", load.Options{Sources: 2, FirstSource: net.IPv4(10, 0, 0, 1)}, load.ErrInvalid, "want a 127.x.x.x address"},
		{"sources past 127/8", load.Options{Sources: 2, FirstSource: net.IPv4(127, 255, 255, 255)}, load.ErrInvalid, "run past 127.255.255.255"},
		{"fd limit", load.Options{Conns: 1_000_000}, load.ErrFDLimit, "raise it (ulimit -n)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Addr = cmp(tt.opts.Addr, "127.0.0.1:1")
			_, err := load.New(tt.opts)
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want %v containing %q", err, tt.err, tt.want)
			}
		})
	}
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// freeAddr returns an address where nothing listens.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRefused(t *testing.T) {
	for _, cl := range clients {
		t.Run(string(cl), func(t *testing.T) {
			t.Parallel()
			sum := run(t, load.Options{Addr: freeAddr(t), Conns: 3, Client: cl, Requests: 10})
			if sum.OK || sum.ConnsEstablished != 0 || len(sum.Errors) != 1 {
				t.Fatalf("summary %+v", sum)
			}
			e := sum.Errors[0]
			if e.Kind != load.Refused || e.Count != 3 || !strings.Contains(e.Hint, "server is up") || !strings.Contains(e.Example, "refused") {
				t.Errorf("errors %+v, want 3 refused with a hint", sum.Errors)
			}
		})
	}
}

// silentServer accepts connections and reads from them but never answers.
func silentServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(io.Discard, c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestTimeout(t *testing.T) {
	for _, cl := range clients {
		t.Run(string(cl), func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			sum := run(t, load.Options{Addr: silentServer(t), Conns: 2, Client: cl, Timeout: 300 * time.Millisecond})
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %v: the timeout did not end the run", took)
			}
			if sum.OK || sum.ConnsEstablished != 2 || len(sum.Errors) != 1 || sum.Errors[0].Kind != load.Timeout || sum.Errors[0].Count != 2 {
				t.Fatalf("summary %+v, want 2 timeouts", sum)
			}
		})
	}
}

// TestBigFramesAndDeepPipeline makes frames larger than a socket buffer takes
// at once, so writes are partial and replies arrive in pieces.
func TestBigFramesAndDeepPipeline(t *testing.T) {
	for _, m := range model.Names() {
		for _, cl := range clients {
			t.Run(m+"/"+string(cl), func(t *testing.T) {
				t.Parallel()
				srv := startEcho(t, m, "length")
				sum := run(t, load.Options{Addr: srv.Addr().String(), Codec: frame.Length{}, Conns: 4, Size: 256 << 10,
					Pipeline: 8, Requests: 200, Client: cl})
				if !sum.OK || sum.FramesVerified != 200 {
					t.Fatalf("summary %+v", sum)
				}
				if sum.MBPerS <= 0 || sum.BytesReceived != 200*(256<<10+4) {
					t.Errorf("bytes %d, MB/s %.1f", sum.BytesReceived, sum.MBPerS)
				}
			})
		}
	}
}

func TestWarmupExcluded(t *testing.T) {
	for _, cl := range clients {
		t.Run(string(cl), func(t *testing.T) {
			t.Parallel()
			srv := startEcho(t, model.EventLoop, "line")
			sum := run(t, load.Options{Addr: srv.Addr().String(), Conns: 4, Warmup: 200 * time.Millisecond, Requests: 500, Client: cl})
			if !sum.OK || sum.FramesSent != 500 || sum.FramesVerified != 500 || sum.Latency.Count != 500 {
				t.Fatalf("summary %+v: want exactly the 500 measured frames", sum)
			}
			if st := srv.Stats(); st.FramesIn <= 500+4 {
				t.Errorf("server saw %d frames: the warm-up sent none", st.FramesIn)
			}
			if sum.ElapsedS <= 0 || sum.ElapsedS > 10 || sum.WarmupS != 0.2 {
				t.Errorf("elapsed %v warmup %v", sum.ElapsedS, sum.WarmupS)
			}
		})
	}
}

func TestDurationAndCPU(t *testing.T) {
	srv := startEcho(t, model.EventLoop, "line")
	sum := run(t, load.Options{Addr: srv.Addr().String(), Conns: 4, Duration: 300 * time.Millisecond})
	if !sum.OK || sum.FramesVerified == 0 || sum.FramesSent != sum.FramesVerified {
		t.Fatalf("summary %+v", sum)
	}
	if sum.ElapsedS < 0.3 || sum.ElapsedS > 1.5 {
		t.Errorf("elapsed %.3fs for a 300ms run", sum.ElapsedS)
	}
	if sum.CPU.UserS+sum.CPU.SystemS <= 0 || sum.CPU.Utilization <= 0 || sum.CPU.Cores < 1 {
		t.Errorf("cpu %+v", sum.CPU)
	}
}

func TestCancel(t *testing.T) {
	for _, cl := range clients {
		t.Run(string(cl), func(t *testing.T) {
			t.Parallel()
			srv := startEcho(t, model.Goroutine, "line")
			ctx, cancel := context.WithCancel(context.Background())
			l, err := load.New(load.Options{Addr: srv.Addr().String(), Conns: 4, Duration: time.Hour, Client: cl})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan *load.Summary, 1)
			go func() {
				sum, _ := l.Run(ctx)
				done <- sum
			}()
			for l.Progress().Frames < 100 { // wait for traffic
				time.Sleep(time.Millisecond)
			}
			cancel()
			select {
			case sum := <-done:
				if !sum.OK || sum.FramesVerified == 0 || sum.FramesSent != sum.FramesVerified {
					t.Errorf("summary after cancel %+v", sum)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
		})
	}
}

// TestSources checks connections come from the source addresses asked for,
// from 127.0.0.1 or from FirstSource.
func TestSources(t *testing.T) {
	for _, cl := range clients {
		for _, first := range []net.IP{nil, net.IPv4(127, 0, 0, 7)} {
			t.Run(fmt.Sprintf("%s/%v", cl, first), func(t *testing.T) {
				t.Parallel()
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				var mu sync.Mutex
				seen := map[string]int{}
				var wg sync.WaitGroup
				wg.Go(func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						mu.Lock()
						seen[c.RemoteAddr().(*net.TCPAddr).IP.String()]++
						mu.Unlock()
						wg.Go(func() { defer c.Close(); _, _ = io.Copy(c, c) })
					}
				})
				defer wg.Wait()
				defer ln.Close()
				sum := run(t, load.Options{Addr: ln.Addr().String(), Conns: 9, Sources: 3, FirstSource: first,
					Requests: 90, Client: cl, Codec: frame.Raw{}})
				want := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
				if first != nil {
					want = []string{"127.0.0.7", "127.0.0.8", "127.0.0.9"}
				}
				if !sum.OK || sum.Sources != 3 || sum.FirstSource != want[0] {
					t.Fatalf("summary %+v", sum)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(seen) != 3 || seen[want[0]] != 3 || seen[want[1]] != 3 || seen[want[2]] != 3 {
					t.Errorf("connections came from %v, want 3 each from %v", seen, want)
				}
			})
		}
	}
}

func TestWriteText(t *testing.T) {
	sum := run(t, load.Options{Addr: freeAddr(t), Conns: 1})
	var b strings.Builder
	if err := sum.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"0 established of 1 asked", "refused", "hint: nothing accepted the connection", "FAILED"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text summary lacks %q:\n%s", want, b.String())
		}
	}
}

func TestOpenLoopRequests(t *testing.T) {
	srv := startEcho(t, model.EventLoop, "line")
	start := time.Now()
	sum := run(t, load.Options{Addr: srv.Addr().String(), Conns: 3, Rate: 2000, Requests: 300, Warmup: 100 * time.Millisecond})
	if !sum.OK || sum.FramesVerified != 300 || !sum.OpenLoop || sum.RateOffered < 1999 || sum.RateOffered > 2001 {
		t.Fatalf("summary %+v", sum)
	}
	// 300 frames at 2000/s take 150ms after the 100ms warm-up: the schedule is kept, not raced.
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("took %v: faster than the schedule allows", took)
	}
	if sum.ElapsedS < 0.14 || sum.ElapsedS > 1 {
		t.Errorf("elapsed %.3fs, want about 0.15s", sum.ElapsedS)
	}
}
