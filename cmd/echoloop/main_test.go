package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"echoloop/bench/model"
	"echoloop/cmd/internal/cli"
	"echoloop/eventloop/session"
)

// TestMain lets the test binary stand in for the echoloop command, so the
// signal tests run the real main in a child process without a go build.
func TestMain(m *testing.M) {
	if os.Getenv("ECHOLOOP_RUN_MAIN") == "1" {
		if n, err := strconv.ParseUint(os.Getenv("ECHOLOOP_TEST_NOFILE"), 10, 64); err == nil {
			// Lower both limits, so the server cannot raise them back.
			lim := syscall.Rlimit{Cur: n, Max: n}
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				fmt.Fprintln(os.Stderr, "setrlimit:", err)
				os.Exit(3)
			}
		}
		main()
		return
	}
	os.Exit(m.Run())
}

// child is the echoloop command running as a child process with the JSON
// lines of its stdout and stderr parsed; a line that is not JSON comes as
// {"non_json": line}.
type child struct {
	cmd    *exec.Cmd
	lines  chan map[string]any
	exited chan error
}

// startChild runs the command with args and extra environment, and stops
// it when the test ends.
func startChild(t *testing.T, env []string, args ...string) *child {
	t.Helper()
	return startChildCmd(t, env, exec.Command(os.Args[0], childArgs(args)...))
}

// childArgs are the command-line arguments startChild runs the command with.
func childArgs(args []string) []string {
	return append([]string{"-log-format", "json", "-log-level", "debug"}, args...)
}

// startChildCmd is startChild for a command that ends in running os.Args[0]
// with childArgs (through a shell, say).
func startChildCmd(t *testing.T, env []string, cmd *exec.Cmd) *child {
	t.Helper()
	c := &child{cmd: cmd, lines: make(chan map[string]any, 1000), exited: make(chan error, 1)}
	c.cmd.Env = append(append(os.Environ(), "ECHOLOOP_RUN_MAIN=1"), env...)
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stdout, c.cmd.Stderr = w, w // as 2>&1: gnet's own logger writes to stdout
	err = c.cmd.Start()
	w.Close()
	if err != nil {
		out.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill() // no-op once it has exited
		<-done
	})
	go func() {
		defer close(done)
		defer out.Close()
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				rec = map[string]any{"non_json": sc.Text()}
			}
			select {
			case c.lines <- rec:
			default: // nobody is reading; drop
			}
		}
		c.exited <- c.cmd.Wait()
	}()
	return c
}

// wait drains the child's log until it exits and returns its exit error.
func (c *child) wait() error {
	for range c.lines {
	}
	return <-c.exited
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-framing", "json"}, `-framing: frame: unknown framing "json" (known: line, length, fixed:N, raw)`},
		{[]string{"-framing", "fixed:0"}, "fixed:N needs N from 1"},
		{[]string{"-handler", "chat"}, `-handler: handlers: unknown handler "chat" (known: ack, block, broadcast, discard, echo, work)`},
		{[]string{"-reply", "hi"}, `-reply is used only by -handler ack, not "echo"`},
		{[]string{"-max-frame", "lots"}, `invalid size "lots"`},
		{[]string{"-max-frame", "8GiB", "-framing", "length"}, "-max-frame 8589934592 is over 1 GiB"},
		{[]string{"-max-pending", "2GiB"}, "-max-pending 2147483648 is over 1 GiB"},
		{[]string{"-max-frame", "1KiB", "-framing", "raw"}, "-max-frame does not apply to -framing raw"},
		{[]string{"-max-frame", "8", "-framing", "fixed:16"}, "-max-frame does not apply to -framing fixed:16"},
		{[]string{"-max-frame", "100", "-framing", "fixed:16"}, "-max-frame does not apply to -framing fixed:16"},
		{[]string{"-framing", "fixed:1048577"}, `-framing: frame: "fixed:1048577": fixed:N needs N from 1 to 1048576`},
		{[]string{"-addr", "127.0.0.1:99999"}, `-addr: "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`},
		{[]string{"-addr", "nohost"}, `-addr: "nohost" is not host:port`},
		{[]string{"-metrics", "bogus"}, `-metrics: "bogus" is not host:port`},
		{[]string{"-max-memory", "-1"}, `invalid size "-1"`},
		{[]string{"-frame-timeout", "-1s"}, "-frame-timeout -1s is negative"},
		{[]string{"-linger", "-1s"}, "-linger -1s is negative"},
		{[]string{"-loops", "0"}, "-loops 0: need at least 1"},
		{[]string{"-model", "threads"}, `-model: model: unknown model "threads" (known: eventloop, goroutine, and the bench's reference gnet-plain)`},
		{[]string{"-model", "gnet-plain", "-framing", "length"}, "-framing does not apply to -model gnet-plain"},
		{[]string{"-model", "gnet-plain", "-idle-timeout", "1m"}, "-idle-timeout does not apply to -model gnet-plain"},
		{[]string{"-model", "gnet-plain", "-trace"}, "-trace does not apply to -model gnet-plain"},
		{[]string{"-trace=maybe"}, `invalid boolean value "maybe" for -trace`},
		{[]string{"-model", "goroutine", "-loops", "2"}, "-loops applies to -model eventloop"},
		{[]string{"-log-level", "loud"}, `invalid log level "loud"`},
		{[]string{"-log-format", "xml"}, `invalid log format "xml"`},
		{[]string{"-max-conns", "-1"}, "-max-conns -1 is negative"},
		{[]string{"-max-conns", "1000000"}, "-max-conns: session: max conns over the file descriptor limit"},
		{[]string{"-framing", "fixed:16", "-handler", "ack"}, `ack reply "Message received!" (17 bytes) cannot be sent as a fixed:16 frame`},
		{[]string{"-max-pending", "0"}, "-max-pending 0: need at least 1 byte"},
		{[]string{"-idle-timeout", "-1s"}, "-idle-timeout -1s is negative"},
		{[]string{"-idle-timeout", "soon"}, `invalid value "soon" for flag -idle-timeout`},
		{[]string{"-write-timeout", "-1s"}, "-write-timeout -1s is negative"},
		{[]string{"-shutdown-timeout", "0"}, "-shutdown-timeout 0s: need a positive duration"},
		{[]string{"-model", "goroutine", "-edge-triggered"}, "-edge-triggered is a gnet lever"},
		{[]string{"-read-buffer", "2GiB"}, "-read-buffer 2147483648 is over 1 GiB"},
		{[]string{"-echo-self"}, `-echo-self is used only by -handler broadcast, not "echo"`},
		{[]string{"-work", "5ms"}, `-work is used only by -handler work or block, not "echo"`},
		{[]string{"-handler", "broadcast", "-ping"}, `-ping is used only by -handler work or block, not "broadcast"`},
		{[]string{"-handler", "block", "-workers", "8"}, `-workers is used only by -handler work, not "block"`},
		{[]string{"-handler", "work", "-work", "0"}, "-work 0s: need a positive duration"},
		{[]string{"-handler", "block", "-work", "-1ms"}, "-work -1ms: need a positive duration"},
		{[]string{"-handler", "work", "-work", "soon"}, `invalid value "soon" for flag -work`},
		{[]string{"-handler", "work", "-workers", "0"}, "-workers 0: need 1 to 65536"},
		{[]string{"-handler", "work", "-workers", "100000"}, "-workers 100000: need 1 to 65536"},
		{[]string{"-nope"}, "flag provided but not defined: -nope"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stderr)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			out := stderr.String()
			if !strings.Contains(out, tt.want) || !strings.HasPrefix(out, "echoloop: ") {
				t.Errorf("stderr %q, want it to contain %q", out, tt.want)
			}
			if strings.Count(out, "\n") != 1 {
				t.Errorf("stderr is %d lines, want one: %q", strings.Count(out, "\n"), out)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &stderr); code != exitOK {
		t.Fatalf("-h exit %d, want 0", code)
	}
	for _, flag := range []string{"-addr", "-framing", "-handler", "-reply", "-max-frame", "-max-conns", "-loops", "-model",
		"-max-pending", "-idle-timeout", "-write-timeout", "-shutdown-timeout", "-metrics", "-lock-os-thread", "-read-buffer",
		"-edge-triggered", "-log-level", "-log-format", "-max-memory", "-frame-timeout", "-linger",
		"-echo-self", "-work", "-workers", "-ping", "-trace"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("usage does not mention %s:\n%s", flag, stderr.String())
		}
	}
	for _, want := range []string{"(default 4MiB)", "(default 1GiB)", "(default 10ms)", "(default 64)", "at most 100 lines at once, then 20 a second"} {
		if strings.Count(stderr.String(), want) != 1 {
			t.Errorf("usage shows %q %d times, want once:\n%s", want, strings.Count(stderr.String(), want), stderr.String())
		}
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Count(line, "(default") > 1 {
			t.Errorf("usage shows a default twice: %s", line)
		}
	}
}

func TestAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, m := range model.Names() {
		var stderr bytes.Buffer
		code := run(context.Background(), []string{"-model", m, "-addr", ln.Addr().String()}, &stderr)
		if code != exitFail {
			t.Errorf("%s: exit %d, want %d", m, code, exitFail)
		}
		want := fmt.Sprintf("echoloop: address %s is already in use", ln.Addr())
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("%s: stderr %q, want %q", m, stderr.String(), want)
		}
	}
}

// TestServeAndStopOnSignal runs the command as a child process, waits for
// its "listening" log line, sends frames and then at once a signal: every
// frame is answered before the connection closes, and the process exits 0.
func TestServeAndStopOnSignal(t *testing.T) {
	const frames = 500
	for _, m := range model.Names() {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
			t.Run(m+"/"+sig.String(), func(t *testing.T) {
				t.Parallel()
				c := startChild(t, nil, "-model", m, "-addr", "127.0.0.1:0")
				start := waitLog(t, c.lines, "listening")
				for _, field := range []string{"addr", "model", "framing", "handler", "max_conns", "fd_limit", "idle_timeout", "max_pending", "max_memory", "frame_timeout", "linger"} {
					if _, ok := start[field]; !ok {
						t.Errorf("start-up line lacks %q: %v", field, start)
					}
				}
				if got := start["idle_timeout"]; got != "5m0s" {
					t.Errorf("idle_timeout logged as %v, want a duration with its unit (5m0s)", got)
				}
				conn, err := net.DialTimeout("tcp", start["addr"].(string), 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
				r := bufio.NewReader(conn)
				if _, err := conn.Write([]byte("ping\n")); err != nil {
					t.Fatal(err)
				}
				if reply, err := r.ReadString('\n'); err != nil || reply != "ping\n" {
					t.Fatalf("echo = %q, %v", reply, err)
				}

				var batch bytes.Buffer
				for i := range frames {
					fmt.Fprintf(&batch, "frame %d\n", i)
				}
				if _, err := conn.Write(batch.Bytes()); err != nil {
					t.Fatal(err)
				}
				if err := c.cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				for i := range frames {
					want := fmt.Sprintf("frame %d\n", i)
					if got, err := r.ReadString('\n'); err != nil || got != want {
						t.Fatalf("reply %d after the signal = %q, %v; want %q", i, got, err, want)
					}
				}
				if _, err := r.ReadByte(); err != io.EOF {
					t.Errorf("after the last reply: %v, want EOF", err)
				}
				waitLog(t, c.lines, "stopped")
				if err := c.wait(); err != nil {
					t.Fatalf("exit: %v, want status 0", err)
				}
			})
		}
	}
}

// TestHandlerFlags runs the command with each handler that takes flags of
// its own, as a child process, and checks that the flags reach it.
func TestHandlerFlags(t *testing.T) {
	for _, m := range model.Names() {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			chat := startChild(t, nil, "-model", m, "-addr", "127.0.0.1:0", "-handler", "broadcast", "-echo-self")
			start := waitLog(t, chat.lines, "listening")
			if start["echo_self"] != true {
				t.Errorf("start-up line: echo_self %v, want true", start["echo_self"])
			}
			// A connection is in the room before its first frame is
			// served, so the echo of its own frame says it is in.
			a := dialLines(t, start["addr"].(string))
			a.send(t, "a is in")
			a.expect(t, "a is in") // -echo-self
			b := dialLines(t, start["addr"].(string))
			b.send(t, "b is in")
			b.expect(t, "b is in")
			a.expect(t, "b is in")
			a.send(t, "hello")
			a.expect(t, "hello")
			b.expect(t, "hello")

			work := startChild(t, nil, "-model", m, "-addr", "127.0.0.1:0", "-handler", "work", "-work", "300ms", "-workers", "2", "-ping")
			start = waitLog(t, work.lines, "listening")
			if start["work"] != "300ms" || start["workers"] != float64(2) || start["ping"] != true {
				t.Errorf("start-up line: work %v, workers %v, ping %v; want 300ms, 2, true", start["work"], start["workers"], start["ping"])
			}
			c := dialLines(t, start["addr"].(string))
			c.send(t, "one\nping\ntwo")
			c.expect(t, "ping") // at once, ahead of the work
			c.expect(t, "one")
			c.expect(t, "two")
		})
	}
}

// lineConn is a line-framed client for the command's tests.
type lineConn struct {
	net.Conn
	r *bufio.Reader
}

func dialLines(t *testing.T, addr string) *lineConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	return &lineConn{conn, bufio.NewReader(conn)}
}

func (c *lineConn) send(t *testing.T, lines string) {
	t.Helper()
	if _, err := c.Write([]byte(lines + "\n")); err != nil {
		t.Fatal(err)
	}
}

func (c *lineConn) expect(t *testing.T, want string) {
	t.Helper()
	if got, err := c.r.ReadString('\n'); err != nil || got != want+"\n" {
		t.Fatalf("got %q, %v; want %q", got, err, want+"\n")
	}
}

// TestMetrics serves metrics beside each model and reads the counters and
// the runtime's goroutine count from them.
func TestMetrics(t *testing.T) {
	for _, m := range append(model.Names(), model.Reference) {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			c := startChild(t, nil, "-model", m, "-addr", "127.0.0.1:0", "-metrics", "127.0.0.1:0")
			start := waitLog(t, c.lines, "listening")
			conn, err := net.DialTimeout("tcp", start["addr"].(string), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = conn.Write([]byte("one\ntwo\n"))
			if _, err := io.ReadFull(conn, make([]byte, 8)); err != nil {
				t.Fatal(err)
			}
			resp, err := http.Get(start["metrics"].(string))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := []string{"go_goroutines ", "go_threads ", "process_resident_memory_bytes "}
			if m != model.Reference {
				want = append(want, `echoloop_frames_total{direction="in",model="`+m+`"} 2`,
					`echoloop_connections_open{model="`+m+`"} 1`, `echoloop_closes_total{model="`+m+`",reason="idle"} 0`)
			}
			for _, w := range want {
				if !bytes.Contains(body, []byte(w)) {
					t.Errorf("metrics lack %q:\n%s", w, body)
				}
			}
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
			if err := c.wait(); err != nil {
				t.Fatalf("exit: %v", err)
			}
		})
	}
}

// TestFDExhaustion floods a server whose file descriptor limit is 64 with
// 300 connections: it stays up, serves what its cap allows, refuses the
// rest at once with a rate-limited warning, and serves again once
// connections close.
func TestFDExhaustion(t *testing.T) {
	const flood = 300
	for _, m := range model.Names() {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			c := startChild(t, []string{"ECHOLOOP_TEST_NOFILE=64"}, "-model", m, "-addr", "127.0.0.1:0")
			start := waitLog(t, c.lines, "listening")
			maxConns := int(start["max_conns"].(float64))
			if fd := start["fd_limit"].(float64); fd != 64 || maxConns >= 64 || maxConns < 1 {
				t.Fatalf("fd limit %v, max conns %d: want 64 and a cap below it", fd, maxConns)
			}
			addr := start["addr"].(string)

			var conns []net.Conn
			defer func() {
				for _, conn := range conns {
					conn.Close()
				}
			}()
			served, refused := 0, 0
			for i := range flood {
				conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				conns = append(conns, conn)
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := conn.Write([]byte("hi\n")); err != nil {
					refused++
					continue
				}
				reply, err := bufio.NewReader(conn).ReadString('\n')
				var ne net.Error
				switch {
				case err == nil && reply == "hi\n":
					served++
				case errors.As(err, &ne) && ne.Timeout():
					t.Fatalf("connection %d was neither served nor refused: the server has stopped serving", i)
				case err != nil:
					refused++
				default:
					t.Fatalf("connection %d got %q", i, reply)
				}
			}
			if served != maxConns || refused != flood-maxConns {
				t.Errorf("served %d and refused %d of %d, want %d served", served, refused, flood, maxConns)
			}

			for _, conn := range conns {
				conn.Close()
			}
			conns = nil
			// Serves again once the connections have gone.
			deadline := time.Now().Add(10 * time.Second)
			for {
				conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = conn.Write([]byte("again\n"))
				reply, err := bufio.NewReader(conn).ReadString('\n')
				conn.Close()
				if err == nil && reply == "again\n" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not serving after the flood: %q, %v", reply, err)
				}
				time.Sleep(10 * time.Millisecond) // slots free as the server sees the closes
			}

			if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			warnings := 0
			for rec := range c.lines {
				if rec["message"] == "connection refused: at the connection limit" {
					warnings++
				}
			}
			if err := <-c.exited; err != nil {
				t.Fatalf("server exit: %v (it must survive the flood and stop cleanly)", err)
			}
			if warnings == 0 || warnings >= refused {
				t.Errorf("%d refusal warnings for %d refusals: want some, rate-limited", warnings, refused)
			}
			t.Logf("cap %d under a limit of 64: served %d, refused %d, %d warnings logged", maxConns, served, refused, warnings)
		})
	}
}

func waitLog(t *testing.T, lines <-chan map[string]any, msg string) map[string]any {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case rec, ok := <-lines:
			if !ok {
				t.Fatalf("process ended before logging %q", msg)
			}
			if rec["message"] == msg {
				return rec
			}
		case <-timeout:
			t.Fatalf("no %q log line within 30s", msg)
		}
	}
}

// TestTrace runs the command with -trace on each model and sends a line in
// two writes, the second once the server has logged its read of the first.
func TestTrace(t *testing.T) {
	for _, m := range model.Names() {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			c := startChild(t, nil, "-model", m, "-addr", "127.0.0.1:0", "-trace")
			start := waitLog(t, c.lines, "listening")
			if start["trace"] != true {
				t.Errorf("start-up line says trace %v, want true", start["trace"])
			}
			conn, err := net.DialTimeout("tcp", start["addr"].(string), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
			check := func(rec map[string]any, want string) {
				t.Helper()
				got := fmt.Sprintf("conn=%v remote=%v in=%v frames=%v sizes=%v carried=%v out=%v writes=%v component=%v level=%v",
					rec["conn"], rec["remote"], rec["in"], rec["frames"], rec["sizes"], rec["carried"], rec["out"], rec["writes"], rec["component"], rec["level"])
				want = fmt.Sprintf("conn=1 remote=%s %s component=trace level=info", conn.LocalAddr(), want)
				if got != want {
					t.Errorf("trace line\n%s, want\n%s", got, want)
				}
			}
			if _, err := conn.Write([]byte("hel")); err != nil {
				t.Fatal(err)
			}
			check(waitLog(t, c.lines, "read"), "in=3 frames=0 sizes=[] carried=3 out=0 writes=0")
			if _, err := conn.Write([]byte("lo\n")); err != nil {
				t.Fatal(err)
			}
			check(waitLog(t, c.lines, "read"), "in=3 frames=1 sizes=[6] carried=0 out=6 writes=1")
			if reply, err := bufio.NewReader(conn).ReadString('\n'); err != nil || reply != "hello\n" {
				t.Fatalf("echo = %q, %v", reply, err)
			}
			if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := c.wait(); err != nil {
				t.Fatalf("exit: %v, want status 0", err)
			}
		})
	}
}

func TestTraceShownAtAnyLevel(t *testing.T) {
	var buf bytes.Buffer
	log, err := cli.NewLogger(&buf, "error", "json")
	if err != nil {
		t.Fatal(err)
	}
	newTrace(log).TraceRead(&session.Read{Conn: 1, In: 3})
	if !strings.Contains(buf.String(), `"message":"read"`) {
		t.Errorf("-trace at -log-level error logged %q, want the read", buf.String())
	}
}
