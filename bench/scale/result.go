package scale

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/procfs"

	"echoloop/bench/load"
)

// Schema is Result.Schema; it changes when a field is removed or changes
// meaning.
const Schema = 1

// Result is one scale run: the plan, the machine and its limits, and what
// each concurrency model did. It is results.json; Markdown renders it.
type Result struct {
	Schema   int       `json:"schema"`
	Command  string    `json:"command"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Env      Env       `json:"env"`
	Plan     Plan      `json:"plan"`
	Limits   Limits    `json:"limits"`
	Models   []Model   `json:"models"`
}

// Env is the machine and the tree the binaries were built from.
type Env struct {
	CPUModel  string `json:"cpu_model"`
	Cores     int    `json:"cores"`
	MemTotal  int64  `json:"mem_total"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Commit    string `json:"commit"`
	Dirty     bool   `json:"dirty"` // uncommitted changes in the tree
}

// Plan is what was asked for.
type Plan struct {
	Conns               int      `json:"conns"`
	Servers             int      `json:"servers"`
	Generators          int      `json:"generators"`
	SourcesPerGenerator int      `json:"sources_per_generator"`
	HoldS               float64  `json:"hold_s"`
	Ramp                float64  `json:"ramp"`           // new connections per second per generator; 0 is echoload's default
	ServerArgs          []string `json:"server_args"`    // the first server's after -model; the others differ in -metrics
	GeneratorArgs       []string `json:"generator_args"` // the first generator's; the others differ in -conns and -first-source
}

// Limits are the facts that decide how many processes a count needs.
type Limits struct {
	FDSoft            uint64 `json:"fd_soft"` // the driver's; servers and generators raise theirs to the hard limit
	FDHard            uint64 `json:"fd_hard"`
	ServerMaxConns    int    `json:"server_max_conns"`    // one server: the hard limit less echoloop's reserve
	GeneratorMaxConns int    `json:"generator_max_conns"` // one generator: the hard limit less echoload's reserve
	PortLow           int    `json:"port_low"`            // the ephemeral port range
	PortHigh          int    `json:"port_high"`
	PortsPerSource    int    `json:"ports_per_source"` // connections one source address can make to one server address
	Somaxconn         int    `json:"somaxconn"`
	SynBacklog        int    `json:"tcp_max_syn_backlog"`
	MinServers        int    `json:"min_servers"` // for Plan.Conns
	MinGenerators     int    `json:"min_generators"`
	MinSources        int    `json:"min_sources"`
}

// Model is one concurrency model's run.
type Model struct {
	Model      string      `json:"model"`
	Addr       string      `json:"addr"` // every server's, shared with SO_REUSEPORT
	OK         bool        `json:"ok"`   // every connection asked for held through both round trips
	Failed     string      `json:"failed,omitempty"`
	Servers    []Server    `json:"servers"`
	Generators []Generator `json:"generators"`

	// Phases as the driver saw them, in seconds.
	ConnectS float64 `json:"connect_s"` // generators started until every one waits at its first gate
	HoldS    float64 `json:"hold_s"`    // first gates opened until every generator waits at its second
	VerifyS  float64 `json:"verify_s"`  // second gates opened until every generator exited

	Before    Machine `json:"machine_before"` // when the servers were ready
	HoldStart Machine `json:"machine_hold_start"`
	HoldEnd   Machine `json:"machine_hold_end"`

	Totals Totals `json:"totals"`
}

// Server is one server process.
type Server struct {
	PID       int    `json:"pid"`
	Metrics   string `json:"metrics"`
	Baseline  Sample `json:"baseline"` // listening, no connection yet
	HoldStart Sample `json:"hold_start"`
	HoldEnd   Sample `json:"hold_end"`
	Final     Sample `json:"final"`      // after the last round trips and the generators' exit
	ConnsOpen int    `json:"conns_open"` // its echoloop_connections_open at the end of the hold; -1 if unread
	ExitCode  int    `json:"exit_code"`  // after SIGTERM; 0 is a clean drain
}

// Generator is one load generator process.
type Generator struct {
	PID       int           `json:"pid"`
	Conns     int           `json:"conns"`
	Sources   string        `json:"sources"` // first-last source address
	HoldStart Sample        `json:"hold_start"`
	HoldEnd   Sample        `json:"hold_end"`
	Summary   *load.Summary `json:"summary"` // its -json summary; nil if it wrote none
	ExitCode  int           `json:"exit_code"`
}

// Totals add up the processes of one model.
type Totals struct {
	ConnsAsked       int               `json:"conns_asked"`
	ConnsEstablished int               `json:"conns_established"`
	ConnsAtHold      int               `json:"conns_at_hold"` // open and verified when the hold began, by the generators' count
	ConnsHeld        int               `json:"conns_held"`    // through the last round trip after the hold
	Failures         int               `json:"failures"`      // asked less held: not connected, not answered, or mismatched
	Mismatches       uint64            `json:"mismatches"`
	Errors           map[string]uint64 `json:"errors"` // failed connections by kind

	ServerConnsOpen int `json:"server_conns_open"` // the servers' own count at the end of the hold; -1 if a scrape failed

	ServerRSSBaseline int64   `json:"server_rss_baseline"` // all servers, listening with no connection
	ServerRSSStart    int64   `json:"server_rss_hold_start"`
	ServerRSSEnd      int64   `json:"server_rss_hold_end"`
	RSSPerConn        float64 `json:"rss_per_conn"`       // (end − baseline) / connections the servers held
	RSSPerConnTotal   float64 `json:"rss_per_conn_total"` // end / connections, baseline included

	ServerCPUConnectS float64 `json:"server_cpu_connect_s"` // accepting and the first round trips
	ServerCPUHoldS    float64 `json:"server_cpu_hold_s"`    // over the idle hold
	ServerCPUHoldPct  float64 `json:"server_cpu_hold_pct"`  // of one core, over the hold
	ServerCPUVerifyS  float64 `json:"server_cpu_verify_s"`  // the last round trips and the closes

	GeneratorRSSEnd   int64   `json:"generator_rss_hold_end"`
	GeneratorCPUHoldS float64 `json:"generator_cpu_hold_s"`
	OtherCPUHoldS     float64 `json:"other_cpu_hold_s"` // the rest of the machine over the hold: all busy time less ours
}

// Save writes r as indented JSON.
func (r *Result) Save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// environment describes this machine and tree.
func environment(root string) Env {
	env := Env{Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		env.Kernel = strings.TrimSpace(string(b))
	}
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if ci, err := fs.CPUInfo(); err == nil && len(ci) > 0 {
			env.CPUModel = ci[0].ModelName
		}
		if mi, err := fs.Meminfo(); err == nil && mi.MemTotalBytes != nil {
			env.MemTotal = int64(*mi.MemTotalBytes)
		}
	}
	if out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output(); err == nil {
		env.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "-C", root, "status", "--porcelain").Output(); err == nil {
		env.Dirty = len(strings.TrimSpace(string(out))) > 0
	}
	return env
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func kib(b float64) string {
	if b < 1024 {
		return fmt.Sprintf("%.0f B", b)
	}
	return fmt.Sprintf("%.2f KiB", b/1024)
}
