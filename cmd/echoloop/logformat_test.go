package main

import (
	"bufio"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"

	"echoloop/bench/model"
)

// TestJSONLogOnly runs every model, the gnet reference included, under
// -log-format json: every line it writes to stderr from start to stop is
// JSON, gnet's own lines too (as component=gnet).
func TestJSONLogOnly(t *testing.T) {
	for _, m := range append(model.Names(), model.Reference) {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			c := startChild(t, nil, "-model", m, "-addr", "127.0.0.1:0")
			var components []any
			check := func(rec map[string]any) {
				if line, ok := rec["non_json"]; ok {
					t.Errorf("a line that is not JSON: %s", line)
				}
				components = append(components, rec["component"])
			}
			var start map[string]any
			for start == nil {
				rec, ok := <-c.lines
				if !ok {
					t.Fatal("process ended before logging \"listening\"")
				}
				if check(rec); rec["message"] == "listening" {
					start = rec
				}
			}
			conn, err := net.DialTimeout("tcp", start["addr"].(string), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := conn.Write([]byte("ping\n")); err != nil {
				t.Fatal(err)
			}
			if reply, err := bufio.NewReader(conn).ReadString('\n'); err != nil || reply != "ping\n" {
				t.Fatalf("echo = %q, %v", reply, err)
			}
			if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			for rec := range c.lines {
				check(rec)
			}
			if err := <-c.exited; err != nil {
				t.Fatalf("exit: %v", err)
			}
			if gnet := m != model.Goroutine; gnet && !slices.Contains(components, any("gnet")) {
				t.Errorf("no component=gnet line at -log-level debug: gnet's logs do not reach the server's logger")
			}
		})
	}
}
