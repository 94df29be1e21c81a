package textbook_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"echoloop/bench/load"
	"echoloop/bench/textbook"
	"echoloop/eventloop/frame"
)

// startScript runs model's script on 127.0.0.1 port 0, waits for its
// "listening" line and returns the address it logged. The process is
// stopped with SIGTERM, and waited for, when the test ends.
func startScript(t *testing.T, py textbook.Python, model string) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	script, ok := textbook.Script(root, model)
	if !ok {
		t.Fatalf("no script for %s", model)
	}
	cmd := exec.Command(py.Path, script, "127.0.0.1:0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	done := make(chan struct{})
	var tail bytes.Buffer // what it wrote before exiting, for the failure message
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct{ Message, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Message == "listening" {
				addr <- rec.Addr
				continue
			}
			tail.WriteString(sc.Text() + "\n")
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-done // stderr reaches EOF when the process is gone
		_ = cmd.Wait()
	})
	select {
	case a := <-addr:
		return a
	case <-done:
		t.Fatalf("%s exited before listening:\n%s", script, tail.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not log that it listens within 30s", script)
	}
	return ""
}

func findPython(t *testing.T) textbook.Python {
	t.Helper()
	py, err := textbook.FindPython(context.Background())
	if errors.Is(err, textbook.ErrNoPython) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return py
}

// TestScriptsEcho loads each script the way echobench does, with the
// load generator's client, and checks every reply.
func TestScriptsEcho(t *testing.T) {
	py := findPython(t)
	for _, model := range []string{textbook.Select, textbook.Threads} {
		t.Run(model, func(t *testing.T) {
			addr := startScript(t, py, model)
			for _, codec := range []frame.Codec{frame.Length{}, frame.Line{}} {
				sum, err := load.Run(context.Background(), load.Options{
					Addr: addr, Codec: codec, Conns: 8, Size: 1024, Pipeline: 8, Requests: 2000,
					Duration: time.Minute, Timeout: 30 * time.Second,
				})
				if err != nil {
					t.Fatal(err)
				}
				if !sum.OK || sum.Mismatches != 0 || sum.FramesVerified < 2000 || sum.ConnsEstablished != 8 {
					t.Errorf("%s framing: ok %v, %d verified, %d mismatches, %d connections, errors %v",
						codec, sum.OK, sum.FramesVerified, sum.Mismatches, sum.ConnsEstablished, sum.Errors)
				}
			}
		})
	}
}

// TestScriptsEchoLargeWrite sends 8 MiB in one write while reading the
// echo back: more than the socket buffers hold, so the server's send takes
// only part of what it was given and a server that drops the rest fails.
func TestScriptsEchoLargeWrite(t *testing.T) {
	py := findPython(t)
	for _, model := range []string{textbook.Select, textbook.Threads} {
		t.Run(model, func(t *testing.T) {
			addr := startScript(t, py, model)
			c, err := net.DialTimeout("tcp", addr, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
				t.Fatal(err)
			}
			sent := make([]byte, 8<<20)
			rand.Read(sent)
			wrote := make(chan error, 1)
			go func() {
				_, err := c.Write(sent)
				wrote <- err
			}()
			got := make([]byte, len(sent))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("read the echo: %v", err)
			}
			if err := <-wrote; err != nil {
				t.Fatalf("write: %v", err)
			}
			if !bytes.Equal(got, sent) {
				i := 0
				for got[i] == sent[i] {
					i++
				}
				t.Fatalf("the echo differs from byte %d on", i)
			}
		})
	}
}
