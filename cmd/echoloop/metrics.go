package main

import (
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"echoloop/bench/model"
	"echoloop/eventloop/session"
)

// statsCollector exposes a server's counters. It reads Stats only when
// scraped, so the hot path pays nothing for the metrics.
type statsCollector struct {
	srv                               model.Server
	open, conns, frames, bytes, close *prometheus.Desc
	partial, memory, acceptErrors     *prometheus.Desc
}

func newStatsCollector(srv model.Server, modelName string) *statsCollector {
	labels := prometheus.Labels{"model": modelName}
	desc := func(name, help string, varLabels ...string) *prometheus.Desc {
		return prometheus.NewDesc("echoloop_"+name, help, varLabels, labels)
	}
	return &statsCollector{
		srv:          srv,
		open:         desc("connections_open", "Connections being served now."),
		conns:        desc("connections_total", "Connections accepted, refused ones included."),
		frames:       desc("frames_total", "Frames decoded (in) and replies queued (out).", "direction"),
		bytes:        desc("bytes_total", "Bytes read from sockets (in) and reply bytes queued (out).", "direction"),
		close:        desc("closes_total", "Closed connections by reason.", "reason"),
		partial:      desc("partial_frames_total", "Connections that ended with part of a frame unanswered."),
		memory:       desc("memory_held_bytes", "Memory held for clients (partial frames, unserved input, unsent replies), as -max-memory counts it."),
		acceptErrors: desc("accept_errors_total", "Failed accept(2) calls (EMFILE, ENFILE...); the server backs off and accepts again."),
	}
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.open, c.conns, c.frames, c.bytes, c.close, c.partial, c.memory, c.acceptErrors} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(st.ConnsOpen))
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.CounterValue, float64(st.ConnsTotal))
	ch <- prometheus.MustNewConstMetric(c.frames, prometheus.CounterValue, float64(st.FramesIn), "in")
	ch <- prometheus.MustNewConstMetric(c.frames, prometheus.CounterValue, float64(st.FramesOut), "out")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(st.BytesIn), "in")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(st.BytesOut), "out")
	ch <- prometheus.MustNewConstMetric(c.partial, prometheus.CounterValue, float64(st.PartialFrames))
	ch <- prometheus.MustNewConstMetric(c.memory, prometheus.GaugeValue, float64(st.MemoryHeld))
	ch <- prometheus.MustNewConstMetric(c.acceptErrors, prometheus.CounterValue, float64(st.AcceptErrors))
	for _, r := range session.Reasons() {
		ch <- prometheus.MustNewConstMetric(c.close, prometheus.CounterValue, float64(st.Closes[r]), r.String())
	}
}

// maxMetricsConns is how many metrics connections are served at once; more
// wait in the listen backlog.
const maxMetricsConns = 16

// serveMetrics serves, on addr until the returned server is shut down:
// Prometheus metrics at /metrics (the server's counters, and the Go
// runtime's and the process's: goroutines, threads, CPU, memory); /healthz,
// 200 while the process runs; and /readyz, 200 while ready() (the server
// accepts and is not draining), 503 from the moment a drain starts, which is
// how Kubernetes and HAProxy health checks learn to send no new connections.
func serveMetrics(addr string, srv model.Server, modelName string, ready func() bool) (*http.Server, net.Addr, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newStatsCollector(srv, modelName),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	// The connection cap keeps a reserve of descriptors (session.FDReserve)
	// beside the connections; metrics connections come out of it, so they
	// are capped too: a scraper flood cannot take the descriptors accept(2)
	// needs.
	ln = netutil.LimitListener(ln, maxMetricsConns)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }() // ends with ErrServerClosed at Close
	return hs, ln.Addr(), nil
}
