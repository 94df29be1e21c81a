// Package results is the record of an echobench run: the environment, the
// server configurations, and every repetition of every measured cell, as
// written to raw.json in a results folder. The harness fills it; the report
// package reads it. Units are in the field names or comments: latency in
// microseconds, CPU in cores (1.0 = one core busy for the whole window) or
// microseconds per frame, memory in bytes.
package results

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"
)

// Schema is the version of this format; it changes when a field changes
// meaning.
const Schema = 1

// Run is one echobench run.
type Run struct {
	Schema   int       `json:"schema"`
	Label    string    `json:"label"`
	Profile  string    `json:"profile"` // quick, full
	Command  string    `json:"command"` // the command line that made it
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Env      Env       `json:"env"`
	Servers  []Server  `json:"servers"` // in display order
	Cells    []Cell    `json:"cells"`   // load cells, every repetition
	Idle     []Idle    `json:"idle"`    // idle-memory cells, every repetition
	Notes    []string  `json:"notes"`   // what the run ran into (fd limit, failed cells...)
}

// Env is where the run happened.
type Env struct {
	CPUModel  string `json:"cpu_model"`
	Cores     int    `json:"cores"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	// PythonVersion is the Python that ran the textbook servers; empty
	// when none ran.
	PythonVersion string `json:"python_version,omitempty"`
	FDLimit       uint64 `json:"fd_limit"`    // soft RLIMIT_NOFILE of the processes
	ServerCPUs    string `json:"server_cpus"` // taskset CPU list the servers ran on
	LoadCPUs      string `json:"load_cpus"`   // taskset CPU list the load generator ran on
	Commit        string `json:"commit"`      // git commit of the tree built
	Dirty         bool   `json:"dirty"`       // the tree had uncommitted changes
}

// Server is one server configuration of the matrix.
type Server struct {
	Name       string   `json:"name"`            // e.g. "eventloop-1", used by cells
	Model      string   `json:"model"`           // eventloop, goroutine, gnet-plain, python-select, python-threads
	Loops      int      `json:"loops"`           // event loops (eventloop, gnet-plain, python-select)
	GOMAXPROCS int      `json:"gomaxprocs"`      // set, or what the server's default came to
	Args       []string `json:"args"`            // every flag it was started with
	Reference  bool     `json:"reference"`       // the gnet-plain floor, not a contender
	Build      string   `json:"build,omitempty"` // the commit its binary was built from, when not the run's own tree (echobench -baseline)
}

// Interrupted is the Failed reason of a repetition that the run was
// stopped in the middle of (Ctrl-C, SIGTERM): it says nothing of the
// server.
const Interrupted = "interrupted: the run was stopped during this cell"

// Cell kinds.
const (
	Closed = "closed" // each connection sends its next frame when a reply arrives
	Open   = "open"   // frames on a fixed schedule, latency from intended send time
)

// Cell is one repetition of one load cell.
type Cell struct {
	Server       string  `json:"server"`
	Kind         string  `json:"kind"` // Closed or Open
	Conns        int     `json:"conns"`
	Size         int     `json:"size"` // payload bytes
	Pipeline     int     `json:"pipeline"`
	RateFraction float64 `json:"rate_fraction,omitempty"` // Open: share of the closed-loop capacity offered
	RateOffered  float64 `json:"rate_offered,omitempty"`  // Open: frames per second offered
	Rep          int     `json:"rep"`                     // 1-based repetition

	// From the load generator (echoload -json), over the measured window.
	FramesPerS       float64           `json:"frames_per_s"`
	MBPerS           float64           `json:"mb_per_s"` // payload, one direction, 10^6 bytes
	Latency          Latency           `json:"latency"`
	ConnsEstablished int               `json:"conns_established"`
	FramesVerified   uint64            `json:"frames_verified"`
	Mismatches       uint64            `json:"mismatches"`
	Errors           map[string]uint64 `json:"errors,omitempty"` // by kind
	LoadCPU          float64           `json:"load_cpu"`         // cores used by the generator

	// From /proc/<server pid>, over the same window.
	ServerCPU      float64 `json:"server_cpu"`        // cores used by the server
	CPUPerFrameUS  float64 `json:"cpu_per_frame_us"`  // server CPU time per verified frame
	RSS            int64   `json:"rss"`               // server resident memory at the window's end
	Threads        int     `json:"threads"`           // server OS threads
	Goroutines     int     `json:"goroutines"`        // -1 where the server does not report them
	VolCtxSwPerS   float64 `json:"vol_ctxsw_per_s"`   // voluntary context switches, all threads
	InvolCtxSwPerS float64 `json:"invol_ctxsw_per_s"` // involuntary context switches, all threads

	// Bottleneck is which side ran out of CPU: "server", "load generator",
	// "both", or "neither" (then the limit was elsewhere: latency, the
	// kernel's loopback path, the schedule of an open-loop run).
	Bottleneck string `json:"bottleneck"`
	Failed     string `json:"failed,omitempty"` // why the cell produced no figures
}

// Latency percentiles in microseconds, from the generator's HDR histogram
// (Max is exact).
type Latency struct {
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Max  float64 `json:"max_us"`
}

// Idle is one repetition of an idle-memory cell: Conns connections opened,
// one verified round trip each, then held while the server's memory is
// read, then one more verified round trip each.
type Idle struct {
	Server string `json:"server"`
	Conns  int    `json:"conns"` // asked for
	// Open is how many were open when the memory was read (the
	// generator's count as it began to hold them); 0 in runs recorded
	// before it was kept, where Held stands in for it.
	Open         int               `json:"open,omitempty"`
	Held         int               `json:"held"`             // open to the end and verified by the last round trip
	Errors       map[string]uint64 `json:"errors,omitempty"` // failed connections by kind
	Rep          int               `json:"rep"`
	BaselineRSS  int64             `json:"baseline_rss"`   // server RSS before the connections
	HeldRSS      int64             `json:"held_rss"`       // server RSS while holding them
	BytesPerConn float64           `json:"bytes_per_conn"` // (HeldRSS-BaselineRSS)/Open
	Threads      int               `json:"threads"`
	Goroutines   int               `json:"goroutines"` // -1 where not reported
	Failed       string            `json:"failed,omitempty"`
}

// Save writes r as indented JSON to path.
func (r *Run) Save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Load reads a run saved by Save.
func Load(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("results: %s: %w", path, err)
	}
	if r.Schema != Schema {
		return nil, fmt.Errorf("results: %s has schema %d, this build reads %d", path, r.Schema, Schema)
	}
	return &r, nil
}

// Spread is the median of repeated measurements with their range.
type Spread struct {
	Median, Min, Max float64
	N                int
}

// SpreadOf summarises xs; N is 0 when xs is empty.
func SpreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Median: m, Min: s[0], Max: s[len(s)-1], N: len(s)}
}
