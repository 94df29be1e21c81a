package model_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// chatSize is the payload of a chat frame: sender and sequence number, and
// filler.
const chatSize = 32

// chatWindow is how far a chat client may run ahead: it sends its frame k
// once it has received frame k-chatWindow of every other client. The room
// is self-clocked, so no receiver falls behind by more than about
// chatWindow frames per sender and nobody is closed as a slow consumer.
const chatWindow = 8

// BenchmarkBroadcast measures a chat room (-handler broadcast) of 10, 100
// and 1,000 connections on each model: every client sends frames, each goes
// to every other client, and every client verifies that it receives every
// other client's frames, each sender's in order. The clients run in a child
// process (this test binary, see TestMain), so this process's CPU time is
// the server's. An op is one delivery (one frame reaching one receiver); it
// reports deliveries/s and the server's CPU time per delivery. Client and
// server share the machine's CPUs, unpinned. Run with a fixed count, which
// is split into whole frames per client:
//
//	go test -run '^$' -bench Broadcast -benchtime 2000000x ./bench/model
func BenchmarkBroadcast(b *testing.B) {
	for _, conns := range []int{10, 100, 1000} {
		for _, m := range model.Names() {
			b.Run(fmt.Sprintf("conns=%d/model=%s", conns, m), func(b *testing.B) { benchBroadcast(b, m, conns) })
		}
	}
}

func benchBroadcast(b *testing.B, m string, conns int) {
	room := handlers.NewBroadcast(false)
	srv := servertest.Start(b, model.Options{Model: m, Config: session.Config{
		Codec: frame.Length{}, Handler: room, Logger: nopLogger,
	}})
	frames := max(1, (b.N+conns*(conns-1)-1)/(conns*(conns-1))) // per client

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), fmt.Sprintf("ECHOLOOP_CHAT=%s %d %d", srv.Addr(), conns, frames))
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = child.Wait()
	}()
	out := bufio.NewReader(stdout)
	if line, _ := out.ReadString('\n'); line != "ready\n" {
		b.Fatalf("chat clients: %q", line)
	}
	servertest.Eventually(b, "every client in the room", func() bool { return room.Peers() == conns })
	before := srv.Stats()

	runtime.GC()
	b.ResetTimer()
	cpu0, wall0 := cpuTime(), time.Now()
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		b.Fatal(err)
	}
	line, _ := out.ReadString('\n')
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	b.StopTimer()

	got, ok := strings.CutPrefix(strings.TrimSpace(line), "done ")
	delivered, err := strconv.ParseInt(got, 10, 64)
	if !ok || err != nil {
		b.Fatalf("chat clients: %q", line)
	}
	if want := int64(frames) * int64(conns) * int64(conns-1); delivered != want {
		b.Fatalf("clients received %d frames, want %d", delivered, want)
	}
	// The server counts a write after it returns, which may be after the
	// client has read it.
	servertest.Until(b, servertest.IOTimeout, "every delivery counted", func() (bool, string) {
		out := srv.Stats().FramesOut - before.FramesOut
		return out == delivered, fmt.Sprintf("server counted %d frames out, clients received %d", out, delivered)
	})
	if n := srv.Stats().Closes[session.SlowConsumer]; n > 0 {
		b.Fatalf("%d clients closed as slow consumers", n)
	}
	b.ReportMetric(float64(delivered)/wall.Seconds(), "deliveries/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(delivered), "server-cpu-ns/delivery")
	b.ReportMetric(float64(frames), "frames/client")
	b.ReportMetric(0, "ns/op")
}

// chatClients is the child process of BenchmarkBroadcast: spec is "addr
// conns frames". It connects conns clients, prints "ready", and on a line
// from stdin has each client send frames frames, self-clocked by
// chatWindow, while reading and checking everything the others send. It
// prints "done N", N the frames received in all, or "error ...".
func chatClients(spec string) int {
	var addr string
	var conns, frames int
	if _, err := fmt.Sscan(spec, &addr, &conns, &frames); err != nil {
		fmt.Println("error: spec:", err)
		return 1
	}
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			fmt.Println("error: dial:", err)
			return 1
		}
		defer c.Close()
		cs[i] = c
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return 1
	}
	// The server numbers connections in the order it opened them; clients
	// name themselves by their index here instead.
	results := make(chan error, conns)
	for i, c := range cs {
		go func() { results <- chatClient(c, i, conns, frames) }()
	}
	var errs []error
	for range conns {
		errs = append(errs, <-results)
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Println("error:", strings.ReplaceAll(err.Error(), "\n", "; "))
		return 1
	}
	fmt.Printf("done %d\n", int64(conns)*int64(conns-1)*int64(frames))
	return 0
}

// chatClient sends frames chat frames as client me of conns, each once the
// window allows, and reads until it has every other client's frames,
// checking each sender's order and every byte.
func chatClient(c net.Conn, me, conns, frames int) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	codec := frame.Length{}
	next := make([]int, conns)      // the next sequence number expected from each sender
	complete := make([]int, frames) // senders whose frame k has arrived, for each k
	sent, want := 0, (conns-1)*frames
	send := func() error {
		var out []byte
		for sent < frames && (sent < chatWindow || complete[sent-chatWindow] == conns-1) {
			out, _ = codec.Append(out, chatFrame(me, sent))
			sent++
		}
		if len(out) == 0 {
			return nil
		}
		_, err := c.Write(out)
		return err
	}
	if err := send(); err != nil {
		return err
	}
	buf := make([]byte, 0, 64<<10)
	chunk := make([]byte, 64<<10)
	for got := 0; got < want; {
		n, err := c.Read(chunk)
		if n == 0 && err != nil {
			return fmt.Errorf("client %d after %d of %d frames: %w", me, got, want, err)
		}
		buf = append(buf, chunk[:n]...)
		used := 0
		for {
			p, k, err := codec.Decode(buf[used:])
			if errors.Is(err, frame.ErrIncomplete) {
				break
			}
			if err != nil {
				return err
			}
			used += k
			from, seq := int(binary.BigEndian.Uint32(p)), int(binary.BigEndian.Uint32(p[4:]))
			switch {
			case from >= conns || from == me || seq != next[from]:
				return fmt.Errorf("client %d got frame %d of client %d, want frame %d", me, seq, from, next[min(from, conns-1)])
			case !chatOK(p, from, seq):
				return fmt.Errorf("client %d: frame %d of client %d arrived changed", me, seq, from)
			}
			next[from]++
			complete[seq]++
			got++
		}
		buf = append(buf[:0], buf[used:]...)
		if err := send(); err != nil {
			return err
		}
	}
	return nil
}

// chatFrame is the payload of frame seq of client from.
func chatFrame(from, seq int) []byte {
	p := make([]byte, chatSize)
	binary.BigEndian.PutUint32(p, uint32(from))
	binary.BigEndian.PutUint32(p[4:], uint32(seq))
	for i := 8; i < chatSize; i++ {
		p[i] = byte(from + seq + i)
	}
	return p
}

// chatOK says whether p is exactly chatFrame(from, seq).
func chatOK(p []byte, from, seq int) bool {
	if len(p) != chatSize {
		return false
	}
	for i := 8; i < chatSize; i++ {
		if p[i] != byte(from+seq+i) {
			return false
		}
	}
	return true
}
