package harness

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"echoloop/bench/results"
)

func TestScratchProfile(t *testing.T) {
	name := os.Getenv("SCRATCH_PROFILE")
	if name == "" {
		t.Skip()
	}
	p := Profiles(2)[name]
	if name == "gmp" {
		p = Profile{Name: "gmp", Reps: 5, Warmup: time.Second, Duration: 3 * time.Second,
			Closed: []Shape{{1, 64, 1}, {100, 64, 1}, {1000, 64, 1}, {10000, 64, 1}},
			Servers: []results.Server{
				{Name: "eventloop-1", Model: "eventloop", Loops: 1},
				{Name: "eventloop-1-gomaxprocs2", Model: "eventloop", Loops: 1, GOMAXPROCS: 2},
				{Name: "gnet-plain-1", Model: "gnet-plain", Loops: 1, Reference: true},
				{Name: "gnet-plain-1-gomaxprocs2", Model: "gnet-plain", Loops: 1, GOMAXPROCS: 2, Reference: true},
			}}
	}
	if f := os.Getenv("SCRATCH_SERVERS"); f != "" {
		p, _ = p.Filter(f)
	}
	root, _ := filepath.Abs("../..")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	run, err := Run(ctx, Options{Profile: p, Root: root, ServerCPUs: "0", LoadCPUs: "1", Label: name, Progress: os.Stderr})
	if err != nil {
		t.Log(err)
	}
	if run != nil {
		_ = run.Save("/tmp/scratch-" + name + ".json")
	}
}
