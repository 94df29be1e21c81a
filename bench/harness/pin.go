package harness

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// PinProcess sets the CPUs that every thread of process pid may run on to
// cpus, a taskset list such as "1", and returns the list it had before, to
// pin it back with. It is for a process that cannot be started under
// taskset, such as a benchmark pinning itself. taskset -a goes through the
// threads once, and a thread started meanwhile by one not yet pinned keeps
// the old list, so PinProcess goes through them until every one has the new
// list.
func PinProcess(pid int, cpus string) (was string, err error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	if was, err = allowedCPUs(filepath.Join(dir, "status")); err != nil {
		return "", err
	}
	for range 10 {
		out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput()
		if err != nil {
			return was, fmt.Errorf("harness: taskset -a -p -c %s %d: %v: %s", cpus, pid, err, out)
		}
		want, err := allowedCPUs(filepath.Join(dir, "status")) // as the kernel writes the list
		if err != nil {
			return was, err
		}
		if pinned(filepath.Join(dir, "task"), want) {
			return was, nil
		}
	}
	return was, fmt.Errorf("harness: process %d kept starting threads that escaped taskset -c %s", pid, cpus)
}

// pinned reports whether every thread under the task folder may run on
// want and nothing else.
func pinned(tasks, want string) bool {
	statuses, _ := filepath.Glob(filepath.Join(tasks, "*", "status"))
	for _, st := range statuses {
		got, err := allowedCPUs(st)
		if err == nil && got != want { // an error: the thread has exited
			return false
		}
	}
	return true
}

// allowedCPUs is the Cpus_allowed_list of a /proc status file.
func allowedCPUs(status string) (string, error) {
	f, err := os.Open(status)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("harness: no Cpus_allowed_list in " + status)
}
