package harness

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"echoloop/bench/results"
	"echoloop/bench/textbook"
)

// Shape is one closed-loop load: connections, payload bytes, frames in flight.
type Shape struct{ Conns, Size, Pipeline int }

// Profile is what a run measures.
type Profile struct {
	Name    string
	Servers []results.Server
	Closed  []Shape   // closed-loop cells, for every server
	Open    Shape     // the shape of the open-loop cells
	Rates   []float64 // open-loop rates, as fractions of Open's closed-loop capacity; none: no open loop
	Idle    []int     // connection counts held idle for memory
	Reps    int

	Warmup, Duration time.Duration // of each load cell
	Settle           time.Duration // wait before an idle cell's memory is read
}

// MaxConns stands for the most connections the fd limit allows; Plan
// replaces it with the real number.
const MaxConns = -1

// The textbook pair, beside the Go servers of the same shapes: a select
// loop is one loop, and Python's threads take turns on one interpreter lock
// however many CPUs they are given.
var textbookServers = []results.Server{
	{Name: "python-select", Model: textbook.Select, Loops: 1},
	{Name: "python-threads", Model: textbook.Threads},
}

// servers of a profile: the event loop and the goroutine model with one and
// (when n > 1) with n threads of work, the plain gnet loop as the floor,
// and the textbook pair.
func servers(n int) []results.Server {
	ss := []results.Server{{Name: "eventloop-1", Model: "eventloop", Loops: 1}}
	if n > 1 {
		ss = append(ss, results.Server{Name: fmt.Sprintf("eventloop-%d", n), Model: "eventloop", Loops: n})
	}
	ss = append(ss, results.Server{Name: "goroutine-1", Model: "goroutine", GOMAXPROCS: 1})
	if n > 1 {
		ss = append(ss, results.Server{Name: fmt.Sprintf("goroutine-%d", n), Model: "goroutine", GOMAXPROCS: n})
	}
	ss = append(ss, results.Server{Name: "gnet-plain-1", Model: "gnet-plain", Loops: 1, Reference: true})
	return append(ss, textbookServers...)
}

// Profiles are the named matrices; n is the number of loops and GOMAXPROCS
// of the "-N" servers (the machine's cores).
func Profiles(n int) map[string]Profile {
	all := []int{1, 100, 1000, 10000, MaxConns}
	var closed []Shape
	for _, c := range all {
		closed = append(closed, Shape{c, 64, 1})
	}
	for _, c := range []int{100, 10000} {
		closed = append(closed, Shape{c, 64, 16}, Shape{c, 4096, 1}, Shape{c, 4096, 16})
	}
	return map[string]Profile{
		// About 21 minutes on 2 cores without the textbook servers (20m46s
		// measured); they add two servers to five.
		"full": {
			Name: "full", Servers: servers(n), Closed: closed,
			Open: Shape{1000, 64, 1}, Rates: []float64{0.25, 0.5, 0.75},
			Idle: []int{1000, 10000, MaxConns}, Reps: 3,
			Warmup: time.Second, Duration: 3 * time.Second, Settle: time.Second,
		},
		// Under a minute: a smoke test of every kind of cell.
		"quick": {
			Name: "quick",
			Servers: append([]results.Server{
				{Name: "eventloop-1", Model: "eventloop", Loops: 1},
				{Name: "goroutine-1", Model: "goroutine", GOMAXPROCS: 1},
				{Name: "gnet-plain-1", Model: "gnet-plain", Loops: 1, Reference: true},
			}, textbookServers...),
			Closed: []Shape{{1, 64, 1}, {100, 64, 1}},
			Open:   Shape{100, 64, 1}, Rates: []float64{0.5},
			Idle: []int{200}, Reps: 1,
			Warmup: 200 * time.Millisecond, Duration: 700 * time.Millisecond, Settle: 200 * time.Millisecond,
		},
		// The gnet levers issue 5 asks about, on the event loop at 100 and
		// 10,000 connections, beside the floor and the goroutine model.
		"levers": {
			Name: "levers",
			Servers: []results.Server{
				{Name: "eventloop-1", Model: "eventloop", Loops: 1},
				{Name: "eventloop-1-lockosthread", Model: "eventloop", Loops: 1, Args: []string{"-lock-os-thread"}},
				{Name: "eventloop-1-edge", Model: "eventloop", Loops: 1, Args: []string{"-edge-triggered"}},
				{Name: "eventloop-1-readbuf16k", Model: "eventloop", Loops: 1, Args: []string{"-read-buffer", "16KiB"}},
				// The default gives gnet servers a spare P (eventloop.SpareP);
				// this is without it.
				{Name: "eventloop-1-gomaxprocs1", Model: "eventloop", Loops: 1, GOMAXPROCS: 1},
				{Name: "goroutine-1", Model: "goroutine", GOMAXPROCS: 1},
				{Name: "gnet-plain-1", Model: "gnet-plain", Loops: 1, Reference: true},
			},
			Closed: []Shape{{100, 64, 1}, {10000, 64, 1}},
			Reps:   3, Warmup: time.Second, Duration: 3 * time.Second,
		},
	}
}

// ProfileNames lists the profiles, sorted.
func ProfileNames() []string {
	var names []string
	for name := range Profiles(2) {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Filter keeps the servers named in list (comma-separated); empty keeps all.
func (p Profile) Filter(list string) (Profile, error) {
	if list == "" {
		return p, nil
	}
	var keep []results.Server
	for _, name := range strings.Split(list, ",") {
		i := slices.IndexFunc(p.Servers, func(s results.Server) bool { return s.Name == name })
		if i < 0 {
			var known []string
			for _, s := range p.Servers {
				known = append(known, s.Name)
			}
			return p, fmt.Errorf("profile %s has no server %q (it has %s)", p.Name, name, strings.Join(known, ", "))
		}
		keep = append(keep, p.Servers[i])
	}
	p.Servers = keep
	return p, nil
}

// resolve replaces MaxConns with most.
func (p Profile) resolve(most int) Profile {
	fix := func(c int) int {
		if c == MaxConns {
			return most
		}
		return min(c, most)
	}
	p.Closed = slices.Clone(p.Closed)
	for i := range p.Closed {
		p.Closed[i].Conns = fix(p.Closed[i].Conns)
	}
	p.Idle = slices.Clone(p.Idle)
	for i := range p.Idle {
		p.Idle[i] = fix(p.Idle[i])
	}
	p.Closed = slices.Compact(p.Closed)
	p.Idle = slices.Compact(p.Idle)
	p.Open.Conns = fix(p.Open.Conns)
	return p
}

// counts lists every connection count of p's cells.
func (p Profile) counts() []int {
	cs := []int{p.Open.Conns}
	for _, s := range p.Closed {
		cs = append(cs, s.Conns)
	}
	return append(cs, p.Idle...)
}

// largest is the most connections any cell of p opens.
func (p Profile) largest() int {
	n := 0
	for _, c := range p.counts() {
		n = max(n, c)
	}
	return n
}

// cells is how many measurements p makes, for progress.
func (p Profile) cells() int {
	return p.Reps * len(p.Servers) * (len(p.Closed) + len(p.Rates) + len(p.Idle))
}

func (s Shape) String() string {
	return "conns=" + strconv.Itoa(s.Conns) + " size=" + strconv.Itoa(s.Size) + " pipeline=" + strconv.Itoa(s.Pipeline)
}
