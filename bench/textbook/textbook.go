// Package textbook names the two Python servers this project grew from,
// the textbook pair echobench runs beside the Go servers:
//
//	select_echo.py   one thread, a selectors loop over every socket (the select loop)
//	thread_echo.py   socketserver's thread per client, blocking calls
//
// Both are plain Python 3 with the standard library only. They echo bytes
// without framing, so a client of any framing gets its frames back; they
// take the address to listen on as their only argument ("127.0.0.1:0"
// picks a port) and write one JSON line to stderr once they listen,
// {"message":"listening","addr":"127.0.0.1:40123"}, as echoloop does.
// SIGTERM stops them at once.
package textbook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// Models of the textbook servers, as echobench's results name them.
const (
	Select  = "python-select"  // select_echo.py
	Threads = "python-threads" // thread_echo.py
)

// Dir is the scripts' folder, from the module root.
const Dir = "bench/textbook"

var scripts = map[string]string{Select: "select_echo.py", Threads: "thread_echo.py"}

// Script returns the path of model's script under the module root root,
// and false when model is not a textbook server.
func Script(root, model string) (string, bool) {
	f, ok := scripts[model]
	if !ok {
		return "", false
	}
	return filepath.Join(root, Dir, f), true
}

// IsModel reports whether model is a textbook server.
func IsModel(model string) bool {
	_, ok := scripts[model]
	return ok
}

// ErrNoPython means there is no python3 on PATH that can run the scripts
// (they need 3.8 or later).
var ErrNoPython = errors.New("textbook: no python3 (3.8 or later) on PATH")

// Python is an interpreter that runs the scripts.
type Python struct {
	Path    string // the interpreter itself, not a shim in front of it
	Version string // "3.11.7"
}

// FindPython finds python3 on PATH and asks it for the program it runs:
// a shim (pyenv's is a shell script that execs the interpreter) would
// cost every start a few processes, and the harness wants the process it
// starts to be the one it measures.
func FindPython(ctx context.Context) (Python, error) {
	bin, err := exec.LookPath("python3")
	if err != nil {
		return Python{}, fmt.Errorf("%w: %v", ErrNoPython, err)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-c",
		"import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3]); sys.exit(sys.version_info < (3, 8))")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	switch {
	case len(lines) != 2:
		return Python{}, fmt.Errorf("%w: %s: %v %s", ErrNoPython, bin, err, strings.TrimSpace(stderr.String()))
	case err != nil:
		return Python{}, fmt.Errorf("%w: %s is Python %s", ErrNoPython, lines[0], lines[1])
	}
	return Python{Path: lines[0], Version: lines[1]}, nil
}
