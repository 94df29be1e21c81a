package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"echoloop/bench/model"
)

// TestMain lets the test binary stand in for the echoloop command, so the
// signal tests run the real main in a child process without a go build.
func TestMain(m *testing.M) {
	if os.Getenv("ECHOLOOP_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-framing", "json"}, `-framing: frame: unknown framing "json" (known: line, length, fixed:N, raw)`},
		{[]string{"-framing", "fixed:0"}, "fixed:N needs N from 1"},
		{[]string{"-handler", "chat"}, `-handler: handlers: unknown handler "chat" (known: ack, discard, echo)`},
		{[]string{"-reply", "hi"}, `-reply is used only by -handler ack, not "echo"`},
		{[]string{"-max-frame", "lots"}, `invalid size "lots"`},
		{[]string{"-max-frame", "8GiB", "-framing", "length"}, "over the 4 GiB"},
		{[]string{"-max-frame", "1KiB", "-framing", "raw"}, "-max-frame does not apply to -framing raw"},
		{[]string{"-max-frame", "8", "-framing", "fixed:16"}, "exceed the max frame size 8"},
		{[]string{"-loops", "0"}, "-loops 0: need at least 1"},
		{[]string{"-model", "threads"}, `-model: model: unknown model "threads" (known: eventloop, goroutine)`},
		{[]string{"-model", "goroutine", "-loops", "2"}, "-loops applies to -model eventloop"},
		{[]string{"-log-level", "loud"}, `invalid log level "loud"`},
		{[]string{"-log-format", "xml"}, `invalid log format "xml"`},
		{[]string{"-max-conns", "-1"}, "-max-conns -1 is negative"},
		{[]string{"-max-conns", "1000000"}, "-max-conns: session: max conns over the file descriptor limit"},
		{[]string{"-framing", "fixed:16", "-handler", "ack"}, `ack reply "Message received!" (17 bytes) cannot be sent as a fixed:16 frame`},
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
	for _, flag := range []string{"-addr", "-framing", "-handler", "-reply", "-max-frame", "-max-conns", "-loops", "-model", "-log-level", "-log-format"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("usage does not mention %s:\n%s", flag, stderr.String())
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
// its "listening" log line, echoes a line through it, sends SIGTERM and
// expects a clean exit.
func TestServeAndStopOnSignal(t *testing.T) {
	for _, m := range model.Names() {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
			t.Run(m+"/"+sig.String(), func(t *testing.T) {
				t.Parallel()
				cmd := exec.Command(os.Args[0], "-model", m, "-addr", "127.0.0.1:0", "-log-format", "json", "-log-level", "debug")
				cmd.Env = append(os.Environ(), "ECHOLOOP_RUN_MAIN=1")
				stderr, err := cmd.StderrPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				exited := make(chan error, 1)
				t.Cleanup(func() {
					_ = cmd.Process.Kill() // no-op once it has exited
					<-exited
				})
				lines := make(chan map[string]any, 100)
				go func() {
					defer close(lines)
					sc := bufio.NewScanner(stderr)
					for sc.Scan() {
						var rec map[string]any
						if json.Unmarshal(sc.Bytes(), &rec) == nil {
							lines <- rec
						}
					}
					exited <- cmd.Wait()
				}()

				start := waitLog(t, lines, "listening")
				for _, field := range []string{"addr", "model", "framing", "handler", "max_conns", "fd_limit"} {
					if _, ok := start[field]; !ok {
						t.Errorf("start-up line lacks %q: %v", field, start)
					}
				}
				conn, err := net.DialTimeout("tcp", start["addr"].(string), 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := conn.Write([]byte("ping\n")); err != nil {
					t.Fatal(err)
				}
				reply, err := bufio.NewReader(conn).ReadString('\n')
				if err != nil || reply != "ping\n" {
					t.Fatalf("echo = %q, %v", reply, err)
				}

				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				waitLog(t, lines, "stopped")
				for range lines { // drain until the child closes stderr
				}
				if err := <-exited; err != nil {
					t.Fatalf("exit: %v, want status 0", err)
				}
				exited <- nil // for the cleanup
				if _, err := io.ReadAll(conn); err != nil && !strings.Contains(err.Error(), "reset") {
					t.Errorf("client connection after stop: %v", err)
				}
			})
		}
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
