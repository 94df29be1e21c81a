package model_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	pp "echoloop/eventloop/proxyproto"
	"echoloop/eventloop/session"
)

// TestMain lets the test binary double as the connection holder for
// BenchmarkIdleConns (one process cannot hold both ends of 19,000
// connections under a 20,000 descriptor limit), and as the chat clients of
// BenchmarkBroadcast (so the server's CPU time is measured alone), and as
// the slow readers of BenchmarkSlowReadersBeside (see startFlooders). It
// removes the echoloop binary the proc=pinned benchmarks built.
func TestMain(m *testing.M) {
	if spec := os.Getenv("ECHOLOOP_HOLD"); spec != "" {
		os.Exit(holdConns(spec))
	}
	if spec := os.Getenv("ECHOLOOP_CHAT"); spec != "" {
		os.Exit(chatClients(spec))
	}
	if spec := os.Getenv("ECHOLOOP_FLOOD"); spec != "" {
		os.Exit(floodConns(spec))
	}
	code := m.Run()
	if echoloopDir != "" {
		os.RemoveAll(echoloopDir)
	}
	os.Exit(code)
}

// holdConns opens n connections to addr from 127.0.0.1 to 127.0.0.8 (so
// ephemeral ports do not run out), echoes one line on each, prints "ready",
// and holds them until stdin closes. With a third field "proxy", each
// connection starts with a PROXY v2 header from a client 192.0.2.x.
func holdConns(spec string) int {
	fields := strings.Fields(spec)
	addr, nStr := fields[0], fields[1]
	proxied := len(fields) > 2 && fields[2] == "proxy"
	n, _ := strconv.Atoi(nStr)
	conns := make([]net.Conn, 0, n)
	buf := make([]byte, 3)
	for i := range n {
		d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%8))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			fmt.Printf("dial %d: %v\n", i, err)
			return 1
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if proxied {
			h := proxyproto.HeaderProxyFromAddrs(2,
				&net.TCPAddr{IP: net.IPv4(192, 0, 2, byte(i%250)), Port: 1024 + i%60000}, c.RemoteAddr())
			if _, err := h.WriteTo(c); err != nil {
				fmt.Printf("header %d: %v\n", i, err)
				return 1
			}
		}
		if _, err := c.Write([]byte("hi\n")); err != nil {
			fmt.Printf("write %d: %v\n", i, err)
			return 1
		}
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi\n" {
			fmt.Printf("echo %d: %q %v\n", i, buf, err)
			return 1
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	// Closing them here also keeps them reachable until now: a net.Conn
	// nothing refers to may be closed by its finalizer mid-hold.
	for _, c := range conns {
		_ = c.Close()
	}
	return 0
}

// BenchmarkIdleConns holds 19,000 idle connections (from a child process)
// on a server in this process, with the idle timeout on, and reports the
// CPU this process spends per second of wall time while nothing happens:
// the cost of idle connections between expiries. conns=0 is the floor, the
// same process and server with nothing connected. Run it with a fixed
// count; each iteration is a 100ms idle window:
//
//	go test -run '^$' -bench IdleConns -benchtime 20x ./bench/model
func BenchmarkIdleConns(b *testing.B) {
	for _, conns := range []int{0, 19000} {
		for _, m := range model.Names() {
			b.Run(fmt.Sprintf("conns=%d/model=%s", conns, m), func(b *testing.B) { benchIdle(b, m, conns) })
		}
	}
}

func benchIdle(b *testing.B, m string, conns int) {
	srv := servertest.Start(b, model.Options{Model: m, Config: session.Config{
		IdleTimeout: 5 * time.Minute, Logger: nopLogger,
	}})
	if conns > 0 {
		holder := exec.Command(os.Args[0], "-test.run=^$")
		holder.Env = append(os.Environ(), fmt.Sprintf("ECHOLOOP_HOLD=%s %d", srv.Addr(), conns))
		stdin, _ := holder.StdinPipe()
		stdout, _ := holder.StdoutPipe()
		if err := holder.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() {
			stdin.Close() // the holder exits and its connections close
			_ = holder.Wait()
		}()
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		if line != "ready\n" {
			b.Fatalf("holder: %s", line)
		}
	}
	if open := srv.Stats().ConnsOpen; open != int64(conns) {
		b.Fatalf("server holds %d connections, want %d", open, conns)
	}
	runtime.GC() // start the window with the set-up's garbage collected
	b.ResetTimer()
	cpu0, wall0 := cpuTime(), time.Now()
	for b.Loop() {
		time.Sleep(100 * time.Millisecond)
	}
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	b.ReportMetric(float64(cpu.Microseconds())/wall.Seconds(), "cpu-µs/s")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is this process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleHeap measures the server's heap per idle connection, with
// the PROXY protocol off and on: 5,000 connections held by a child process
// (each with a v2 header when on), the heap in use after a collection
// compared with the server's before. The cost of the protocol when off is
// nothing; when on it is the client address the header gave:
//
//	go test -run '^$' -bench IdleHeap -benchtime 1x -count 3 ./bench/model
func BenchmarkIdleHeap(b *testing.B) {
	for _, proxied := range []bool{false, true} {
		for _, m := range model.Names() {
			b.Run(fmt.Sprintf("proxy=%v/model=%s", proxied, m), func(b *testing.B) { benchIdleHeap(b, m, proxied) })
		}
	}
}

func benchIdleHeap(b *testing.B, m string, proxied bool) {
	const conns = 5000
	cfg := session.Config{IdleTimeout: 5 * time.Minute, Logger: nopLogger}
	spec := "%s %d"
	if proxied {
		trust, err := pp.ParseTrust("127.0.0.0/8")
		if err != nil {
			b.Fatal(err)
		}
		cfg.Proxy = pp.Config{Mode: pp.V2, Trust: trust}
		spec += " proxy"
	}
	for b.Loop() {
		srv := servertest.Start(b, model.Options{Model: m, Config: cfg})
		before := heapInUse()
		holder := exec.Command(os.Args[0], "-test.run=^$")
		holder.Env = append(os.Environ(), "ECHOLOOP_HOLD="+fmt.Sprintf(spec, srv.Addr(), conns))
		stdin, _ := holder.StdinPipe()
		stdout, _ := holder.StdoutPipe()
		if err := holder.Start(); err != nil {
			b.Fatal(err)
		}
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		if line != "ready\n" {
			stdin.Close()
			_ = holder.Wait()
			b.Fatalf("holder: %s", line)
		}
		if open := srv.Stats().ConnsOpen; open != conns {
			b.Fatalf("server holds %d connections, want %d", open, conns)
		}
		held := heapInUse() - before
		stdin.Close()
		_ = holder.Wait()
		b.ReportMetric(float64(held)/conns, "heap-B/conn")
	}
	b.ReportMetric(0, "ns/op")
}

// heapInUse is the heap's live bytes after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
