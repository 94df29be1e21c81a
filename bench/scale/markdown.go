package scale

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// WriteMarkdown writes r for a person: the verdict and totals of each
// model, the limits that shaped the plan, every process's figures, and the
// state of the machine around the hold (other work shares its cores).
func (r *Result) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("# %s idle connections, %s", num(r.Plan.Conns), strings.Join(r.modelNames(), " and "))
	p("")
	p("%d server processes sharing one address with SO_REUSEPORT, %d load generators (echoload) with %d source addresses each, "+
		"one verified round trip on every connection before and after a %.0f s hold; server memory and CPU from /proc.",
		r.Plan.Servers, r.Plan.Generators, r.Plan.SourcesPerGenerator, r.Plan.HoldS)
	p("")
	p("- command: `%s`", r.Command)
	p("- run: %s to %s UTC", r.Started.Format("2006-01-02 15:04:05"), r.Finished.Format("15:04:05"))
	dirty := ""
	if r.Env.Dirty {
		dirty = " (with uncommitted changes)"
	}
	p("- machine: %s, %d cores, %s RAM, Linux %s, %s, commit %.12s%s", r.Env.CPUModel, r.Env.Cores, gib(r.Env.MemTotal),
		r.Env.Kernel, r.Env.GoVersion, r.Env.Commit, dirty)
	p("- server: `echoloop -model MODEL %s` (each its own -metrics port)", strings.Join(r.Plan.ServerArgs, " "))
	p("- generator: `echoload %s` (each its own -conns share and -first-source)", strings.Join(r.Plan.GeneratorArgs, " "))
	p("")

	p("## Result")
	p("")
	p("| model | held / asked | failures | server RSS, hold end (baseline) | RSS per connection above baseline (total ÷ conns) | server CPU over the hold | connect, hold, verify |")
	p("|---|---|---|---|---|---|---|")
	for _, m := range r.Models {
		t := m.Totals
		verdict := fmt.Sprintf("%s / %s", num(t.ConnsHeld), num(t.ConnsAsked))
		if !m.OK {
			verdict += " **FAILED**"
		}
		p("| %s | %s | %d | %s (%s) | %s (%s) | %.2f s (%.2f%% of a core) | %.1f s, %.1f s, %.1f s |", m.Model, verdict, t.Failures,
			mib(t.ServerRSSEnd), mib(t.ServerRSSBaseline), kib(t.RSSPerConn), kib(t.RSSPerConnTotal),
			t.ServerCPUHoldS, t.ServerCPUHoldPct, m.ConnectS, m.HoldS, m.VerifyS)
	}
	p("")
	for _, m := range r.Models {
		if m.Failed != "" {
			p("- %s stopped early: %s", m.Model, m.Failed)
		}
		if len(m.Totals.Errors) > 0 {
			var kinds []string
			for k, n := range m.Totals.Errors {
				kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
			}
			slices.Sort(kinds)
			p("- %s failed connections by kind: %s", m.Model, strings.Join(kinds, ", "))
		}
		if m.Totals.Mismatches > 0 {
			p("- %s: %d replies did not match what was sent", m.Model, m.Totals.Mismatches)
		}
	}
	p("A pass is every connection asked for established, verified before the hold, and verified again after it: failures = asked − held, and must be 0. " +
		"RSS per connection is the servers' resident memory at the end of the hold less their baseline (listening, no connection), divided by the connections the servers counted open.")
	p("")

	l := r.Limits
	p("## Limits")
	p("")
	p("- file descriptors: soft %d, hard %d per process (servers and generators raise the soft limit to the hard one; it cannot go higher here)", l.FDSoft, l.FDHard)
	p("- one server holds at most %s connections (hard limit less echoloop's reserve of %d): %s need at least %d servers; this run used %d",
		num(l.ServerMaxConns), int(l.FDHard)-l.ServerMaxConns, num(r.Plan.Conns), l.MinServers, r.Plan.Servers)
	p("- one generator holds at most %s (hard limit less echoload's reserve of %d): at least %d generators; this run used %d",
		num(l.GeneratorMaxConns), int(l.FDHard)-l.GeneratorMaxConns, l.MinGenerators, r.Plan.Generators)
	p("- ephemeral ports %d-%d: one source address reaches one server address with at most %s connections, so at least %d source addresses; this run used %d (127.0.0.1-127.0.0.%d)",
		l.PortLow, l.PortHigh, num(l.PortsPerSource), l.MinSources, r.Plan.Generators*r.Plan.SourcesPerGenerator, r.Plan.Generators*r.Plan.SourcesPerGenerator)
	p("- listen backlog: somaxconn %d, tcp_max_syn_backlog %d", l.Somaxconn, l.SynBacklog)
	p("")

	for _, m := range r.Models {
		p("## %s", m.Model)
		p("")
		p("Servers on %s (connections open by their own count at the end of the hold, %s in all; %s by the generators' count at its start):", m.Addr,
			num(m.Totals.ServerConnsOpen), num(m.Totals.ConnsAtHold))
		p("")
		p("| pid | conns open | RSS baseline | RSS hold start | RSS hold end | threads | CPU connect | CPU hold | CPU verify | exit |")
		p("|---|---|---|---|---|---|---|---|---|---|")
		for _, s := range m.Servers {
			verify := "–"
			if s.Final.taken() {
				verify = fmt.Sprintf("%.2f s", s.Final.CPUS-s.HoldEnd.CPUS)
			}
			p("| %d | %s | %s | %s | %s | %d | %.2f s | %.2f s | %s | %d |", s.PID, num(s.ConnsOpen),
				mib(s.Baseline.RSS), mib(s.HoldStart.RSS), mib(s.HoldEnd.RSS), s.HoldEnd.Threads,
				s.HoldStart.CPUS-s.Baseline.CPUS, s.HoldEnd.CPUS-s.HoldStart.CPUS, verify, s.ExitCode)
		}
		p("")
		p("Generators:")
		p("")
		p("| pid | sources | asked | established | held | errors | connect | hold | RSS hold end | CPU hold | exit |")
		p("|---|---|---|---|---|---|---|---|---|---|---|")
		for _, g := range m.Generators {
			if s := g.Summary; s != nil {
				p("| %d | %s | %s | %s | %s | %d | %.1f s | %.1f s | %s | %.2f s | %d |", g.PID, g.Sources, num(g.Conns),
					num(s.ConnsEstablished), num(s.ConnsHeld), s.ErrorsTotal, s.ConnectS, s.HoldS, mib(g.HoldEnd.RSS),
					g.HoldEnd.CPUS-g.HoldStart.CPUS, g.ExitCode)
			} else {
				p("| %d | %s | %s | – | – | – | – | – | %s | – | %d |", g.PID, g.Sources, num(g.Conns), mib(g.HoldEnd.RSS), g.ExitCode)
			}
		}
		p("")
		t := m.Totals
		p("Machine (other work shares these cores): load average %.0f when the servers were ready, %.0f and %.0f at the start and end of the hold; "+
			"over the hold the rest of the machine used %.1f s of CPU (%.2f cores) beside the servers' %.2f s and the generators' %.2f s. "+
			"Kernel TCP sockets in use %s at the start of the hold (%s before the generators; %s in TIME_WAIT), TCP buffer memory %s, files open system-wide %s.",
			m.Before.Load1, m.HoldStart.Load1, m.HoldEnd.Load1, t.OtherCPUHoldS, t.OtherCPUHoldS/max(m.HoldS, 1e-9),
			t.ServerCPUHoldS, t.GeneratorCPUHoldS, num(m.HoldStart.TCPInUse), num(m.Before.TCPInUse), num(m.Before.TCPTimeWait),
			mib(m.HoldStart.TCPMemBytes), num(m.HoldStart.FilesOpen))
		p("")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Result) modelNames() []string {
	var names []string
	for _, m := range r.Models {
		names = append(names, m.Model)
	}
	return names
}

// num writes n with thousands separators: 100,000.
func num(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

func gib(b int64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }
