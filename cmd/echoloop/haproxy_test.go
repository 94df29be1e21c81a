package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"echoloop/bench/load"
	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
)

// The HAProxy tests put a real HAProxy (mode tcp) in front of two echoloop
// processes, the way deploy/haproxy.cfg does: HAProxy sends a PROXY header
// on every connection (send-proxy-v2, or send-proxy for v1) and learns
// whether a backend takes new connections from its /readyz, with an HTTP
// check on the -metrics port. The check goes there rather than to the data
// port because a TCP check of the data port passes for as long as the
// listener is open, drain delay included: HAProxy would only learn of a
// drain when connections start failing. The check port speaks plain HTTP,
// so no PROXY header is sent on it (HAProxy sends one on checks only to the
// traffic port, or with check-send-proxy, which would break this check).

// haproxyCfg is the test's haproxy.cfg: deploy/haproxy.cfg with the
// frontend on an inherited socket (fd 3, bound to port 0 by the test), a
// stats socket, checks every 100ms, and roundrobin rather than leastconn, so
// that each backend gets exactly half of the connections.
var haproxyCfg = template.Must(template.New("haproxy.cfg").Parse(`global
    maxconn 4096
    stats socket {{.Sock}} mode 600 level admin
    log stdout format raw local0 info

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 1m
    timeout server 1m
    timeout check 5s
    retries 3
    option redispatch

frontend echo
    bind fd@3
    default_backend echoloop

backend echoloop
    balance roundrobin
{{- if not .DataCheck}}
    option httpchk GET /readyz
    http-check expect status 200
{{- end}}
    default-server inter 100ms fall 2 rise 1
{{- range .Servers}}
    server {{.Name}} {{.Addr}} {{$.Send}} check{{if $.DataCheck}} check-send-proxy{{else}} port {{.CheckPort}}{{end}}
{{- end}}
`))

type haproxyServer struct{ Name, Addr, CheckPort string }

// haproxy is a running HAProxy.
type haproxy struct {
	addr string // the frontend, host:port
	sock string // the stats socket
	cmd  *exec.Cmd
	out  *servertest.LogBuffer // its log and its warnings
}

// startHAProxy writes a haproxy.cfg into a temporary directory and runs
// haproxy -db (in the foreground) in front of servers, sending PROXY headers
// with send (send-proxy or send-proxy-v2); it waits until HAProxy has
// checked every server and found it up, and kills it when the test ends.
func startHAProxy(t *testing.T, bin, send string, servers []haproxyServer) *haproxy {
	t.Helper()
	return startHAProxyChecking(t, bin, send, servers, false)
}

// startHAProxyChecking is startHAProxy; with dataCheck, HAProxy checks each
// server with a TCP connection to its data port that starts with a PROXY
// header (check-send-proxy) instead of /readyz.
func startHAProxyChecking(t *testing.T, bin, send string, servers []haproxyServer, dataCheck bool) *haproxy {
	t.Helper()
	dir := t.TempDir()
	sockDir := dir
	if len(dir) > 80 { // a Unix socket's path has room for about 100 bytes
		var err error
		if sockDir, err = os.MkdirTemp("", "hap"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(sockDir) })
	}
	h := &haproxy{sock: filepath.Join(sockDir, "stats.sock"), out: &servertest.LogBuffer{}}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	var cfg strings.Builder
	if err := haproxyCfg.Execute(&cfg, map[string]any{"Sock": h.sock, "Send": send, "Servers": servers, "DataCheck": dataCheck}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	// The frontend's socket is bound here, to a free port, and inherited.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	lnFile, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command(bin, "-f", cfgPath, "-db")
	h.cmd.ExtraFiles = []*os.File{lnFile} // fd 3
	h.cmd.Stdout, h.cmd.Stderr = h.out, h.out
	err = h.cmd.Start()
	lnFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = h.cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = h.cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("haproxy's output:\n%s", h.out.String())
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("haproxy exited: %v\nits output:\n%s", h.cmd.ProcessState, h.out.String())
		default:
		}
		if st, err := h.stat(); err == nil {
			up := 0
			for _, s := range servers {
				if st[s.Name]["status"] == "UP" && (st[s.Name]["check_status"] == "L7OK" || dataCheck && st[s.Name]["check_status"] == "L4OK") {
					up++
				}
			}
			if up == len(servers) {
				return h
			}
		}
		if time.Now().After(deadline) {
			st, err := h.stat()
			t.Fatalf("haproxy did not find every server up within 30s: %v %v\nits output:\n%s", st, err, h.out.String())
		}
		time.Sleep(10 * time.Millisecond) // HAProxy checks every 100ms
	}
}

// stat returns the stats socket's "show stat" for the backend's servers:
// server name, then column (status, check_status, stot...), then value.
func (h *haproxy) stat() (map[string]map[string]string, error) {
	conn, err := net.DialTimeout("unix", h.sock, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("show stat\n")); err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	head, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	cols := strings.Split(strings.TrimSpace(strings.TrimPrefix(head, "# ")), ",")
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	out := map[string]map[string]string{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(rec) < 2 || rec[0] != "echoloop" || rec[1] == "BACKEND" {
			continue
		}
		row := map[string]string{}
		for i, c := range cols {
			if i < len(rec) {
				row[c] = rec[i]
			}
		}
		out[rec[1]] = row
	}
}

// awaitStatus waits up to 30s for HAProxy to give server the status
// (UP, DOWN).
func (h *haproxy) awaitStatus(t *testing.T, server, status string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := h.stat()
		if err == nil && st[server]["status"] == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not mark %s %s within 30s: %v %v", server, status, st[server], err)
		}
		time.Sleep(10 * time.Millisecond) // HAProxy checks every 100ms
	}
}

// checkLoad fails the test unless sum is a run in which every frame was
// answered and verified and no connection failed or was closed early.
func checkLoad(t *testing.T, what string, sum *load.Summary) {
	t.Helper()
	if !sum.OK || sum.Mismatches > 0 || sum.ErrorsTotal > 0 || sum.ConnsDrained > 0 || sum.FramesVerified == 0 {
		t.Fatalf("%s: ok %v, %d of %d connections established, %d frames verified of %d sent, %d mismatches %v, errors %v, %d drained",
			what, sum.OK, sum.ConnsEstablished, sum.ConnsAsked, sum.FramesVerified, sum.FramesSent,
			sum.Mismatches, sum.MismatchSamples, sum.Errors, sum.ConnsDrained)
	}
}

// haproxyPath finds haproxy on PATH, or where Debian and others install it
// (sbin, which a user's PATH may lack); "" if it is not installed.
func haproxyPath() string {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/haproxy", "/usr/local/sbin/haproxy"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// TestHAProxy runs a real HAProxy in front of two echoloop processes that
// expect the PROXY protocol from 127.0.0.1, and 1,000 verified connections
// through it from four source addresses, 127.0.0.1 to 127.0.0.4: every reply
// is verified, HAProxy saw both backends up and used both, and echoloop
// logged each connection with the client's own address (from the header),
// 250 from each source, not HAProxy's. With v2 it then drains one backend:
// SIGTERM with a -drain-delay longer than HAProxy's check interval; HAProxy
// sees /readyz fail and marks it down, a load running throughout and a load
// started meanwhile see no failed frame, the draining backend gets no new
// connection, and once it has exited a new load is served by the other.
// It skips when haproxy is not installed.
func TestHAProxy(t *testing.T) {
	bin := haproxyPath()
	if bin == "" {
		t.Skip("haproxy is not on PATH, so the tests behind a real load balancer do not run; " +
			"install it to run them (Debian, Ubuntu: apt-get install -y haproxy; Fedora: dnf install haproxy; macOS: brew install haproxy)")
	}
	const conns, sources = 1000, 4
	defer func() {
		if kids := servertest.Children(); len(kids) > 0 {
			t.Errorf("processes left running: %v", kids)
		}
	}()
	for _, m := range model.Names() {
		for _, v := range []struct {
			proto, send string
			drain       bool
		}{{"v2", "send-proxy-v2", true}, {"v1", "send-proxy", false}} {
			t.Run(m+"/"+v.proto, func(t *testing.T) {
				backend := func() (*proc, map[string]any) {
					p := startProc(t, "-model", m, "-addr", "127.0.0.1:0", "-proxy-protocol", v.proto, "-proxy-trust", "127.0.0.1",
						"-metrics", "127.0.0.1:0", "-drain-delay", "10m")
					return p, p.waitLog(t, "listening")
				}
				a, startA := backend()
				b, startB := backend()
				servers := []haproxyServer{}
				for i, start := range []map[string]any{startA, startB} {
					_, metricsPort, _ := net.SplitHostPort(strings.TrimPrefix(metricsBase(t, start), "http://"))
					servers = append(servers, haproxyServer{Name: string(rune('a' + i)), Addr: start["addr"].(string), CheckPort: metricsPort})
				}
				h := startHAProxy(t, bin, v.send, servers)

				sum, err := load.Run(context.Background(), load.Options{
					Addr: h.addr, Codec: frame.Line{}, Conns: conns, Requests: 5 * conns, Sources: sources,
				})
				if err != nil {
					t.Fatal(err)
				}
				checkLoad(t, "load through haproxy", sum)

				// Each connection's close line names the client's address,
				// from the PROXY header: 250 from each source address.
				closed := func() []map[string]any {
					return append(a.lines("connection closed"), b.lines("connection closed")...)
				}
				deadline := time.Now().Add(30 * time.Second)
				for len(closed()) < conns {
					if time.Now().After(deadline) {
						t.Fatalf("%d connections logged closed within 30s, want %d", len(closed()), conns)
					}
					time.Sleep(5 * time.Millisecond) // HAProxy closes its side after the client
				}
				bySource := map[string]int{}
				for _, rec := range closed() {
					host, _, err := net.SplitHostPort(fmt.Sprint(rec["remote"]))
					if err != nil {
						t.Fatalf("connection closed with remote %v: %v", rec["remote"], err)
					}
					bySource[host]++
				}
				for i := 1; i <= sources; i++ {
					src := fmt.Sprintf("127.0.0.%d", i)
					if bySource[src] != conns/sources {
						t.Errorf("%d connections logged from %s, want %d; all: %v", bySource[src], src, conns/sources, bySource)
					}
				}
				if len(bySource) != sources {
					t.Errorf("connections logged from %v, want only the %d source addresses", bySource, sources)
				}

				st, err := h.stat()
				if err != nil {
					t.Fatal(err)
				}
				used := 0
				for _, s := range servers {
					if st[s.Name]["status"] != "UP" || st[s.Name]["stot"] == "0" {
						t.Errorf("haproxy's server %s: status %s, %s sessions; want UP and used",
							s.Name, st[s.Name]["status"], st[s.Name]["stot"])
					}
					var n int
					fmt.Sscan(st[s.Name]["stot"], &n)
					used += n
				}
				if used != conns {
					t.Errorf("haproxy counts %d sessions on its servers, want %d", used, conns)
				}
				t.Logf("%d connections through haproxy (%s): %s sessions to a, %s to b; logged by source %v",
					conns, v.send, st["a"]["stot"], st["b"]["stot"], bySource)

				if v.drain {
					drainBehindHAProxy(t, h, a, metricsBase(t, startA))
				} else {
					a.stopDelayed(t)
				}
				b.stopDelayed(t)
			})
		}
	}
}

// drainBehindHAProxy drains backend a behind h while loads run through h.
func drainBehindHAProxy(t *testing.T, h *haproxy, a *proc, metricsA string) {
	// A load that runs from before the signal until after HAProxy has
	// taken a out: 100 connections, 1,000 frames a second in all.
	during, err := load.New(load.Options{
		Addr: h.addr, Codec: frame.Line{}, Conns: 100, Rate: 1000, Duration: 10 * time.Minute, Sources: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		sum *load.Summary
		err error
	}
	ran := make(chan result, 1)
	go func() {
		sum, err := during.Run(ctx)
		ran <- result{sum, err}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for p := during.Progress(); p.Phase != "running" || p.Frames < 1000; p = during.Progress() {
		if time.Now().After(deadline) || p.Phase == "done" {
			t.Fatalf("the load through haproxy is not running after 30s: %+v", p)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := metric(t, metricsA, "echoloop_connections_open"); n == 0 {
		t.Fatal("the backend to drain serves none of the running load's connections")
	}

	a.signal(t, syscall.SIGTERM)
	a.waitLog(t, "shutting down: not ready, still serving until the drain")
	h.awaitStatus(t, "a", "DOWN")
	totalA := metric(t, metricsA, "echoloop_connections_total")
	sum, err := load.Run(context.Background(), load.Options{
		Addr: h.addr, Codec: frame.Line{}, Conns: 200, Requests: 1000, Sources: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkLoad(t, "a load started while a backend drains", sum)
	if n := metric(t, metricsA, "echoloop_connections_total"); n != totalA {
		t.Errorf("the draining backend was given %d new connections after haproxy marked it down", n-totalA)
	}
	if p := during.Progress(); p.Errors > 0 || p.Mismatches > 0 {
		t.Errorf("the running load during the drain delay: %+v", p)
	}
	cancel()
	r := <-ran
	if r.err != nil {
		t.Fatal(r.err)
	}
	checkLoad(t, "a load running from before the signal to the end of the drain delay", r.sum)
	t.Logf("drain behind haproxy: the load running throughout verified %d frames; the load started during the delay %d; no failed frame",
		r.sum.FramesVerified, sum.FramesVerified)

	a.signal(t, syscall.SIGTERM) // ends the drain delay
	a.waitExit(t)
	sum, err = load.Run(context.Background(), load.Options{
		Addr: h.addr, Codec: frame.Line{}, Conns: 200, Requests: 1000, Sources: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkLoad(t, "a load after the drained backend exited", sum)
	if st, err := h.stat(); err != nil || st["a"]["status"] != "DOWN" || st["b"]["status"] != "UP" {
		t.Errorf("haproxy after the drain: a %v, b %v (%v); want a DOWN, b UP", st["a"]["status"], st["b"]["status"], err)
	}
}

// TestHAProxyDataPortCheck runs HAProxy's other kind of health check, a TCP
// connection to the data port that starts with a PROXY header
// (check-send-proxy): the backend takes the header (a v2 LOCAL, or v1) and
// the check's close, HAProxy finds it up, no check is counted as a bad
// header, and a load through HAProxy is served. (deploy/haproxy.cfg checks
// /readyz instead, which a drain can fail; see TestHAProxy.)
func TestHAProxyDataPortCheck(t *testing.T) {
	bin := haproxyPath()
	if bin == "" {
		t.Skip("haproxy is not on PATH (apt-get install -y haproxy)")
	}
	for _, v := range []struct{ proto, send string }{{"v2", "send-proxy-v2"}, {"v1", "send-proxy"}} {
		t.Run(v.proto, func(t *testing.T) {
			p := startProc(t, "-addr", "127.0.0.1:0", "-proxy-protocol", v.proto, "-proxy-trust", "127.0.0.1", "-metrics", "127.0.0.1:0")
			start := p.waitLog(t, "listening")
			h := startHAProxyChecking(t, bin, v.send, []haproxyServer{{Name: "a", Addr: start["addr"].(string)}}, true)
			h.awaitChecks(t, "a", metricsBase(t, start), 3)
			sum, err := load.Run(context.Background(), load.Options{Addr: h.addr, Codec: frame.Line{}, Conns: 20, Requests: 200})
			if err != nil {
				t.Fatal(err)
			}
			checkLoad(t, "load through haproxy", sum)
			_, body := httpGet(t, metricsBase(t, start)+"/metrics")
			if want := `echoloop_closes_total{model="eventloop",reason="bad proxy header"} 0`; !strings.Contains(body, want) {
				t.Errorf("HAProxy's checks were refused as bad PROXY headers: /metrics lacks %q", want)
			}
			p.stop(t)
		})
	}
}

// awaitChecks waits until HAProxy's health checks of server name have
// opened at least n connections to the backend at metrics, with none failed
// and the server up.
func (h *haproxy) awaitChecks(t *testing.T, name, metrics string, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for metric(t, metrics, "echoloop_connections_total") < n {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d health checks of %s within 30s", n, name)
		}
		time.Sleep(20 * time.Millisecond) // HAProxy checks every 100ms
	}
	st, err := h.stat()
	if err != nil {
		t.Fatal(err)
	}
	if st[name]["status"] != "UP" || st[name]["chkfail"] != "0" {
		t.Fatalf("haproxy's server %s: status %s, %s failed checks; want UP and none", name, st[name]["status"], st[name]["chkfail"])
	}
}
