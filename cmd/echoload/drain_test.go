package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

// TestServerDrainExits3 runs the command, as a child process, against a
// real server that is shut down once the measured window has begun: the
// server drains, the summary says so with no errors, and the exit status
// is 3, not 1.
func TestServerDrainExits3(t *testing.T) {
	for _, m := range model.Names() {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			srv := servertest.Start(t, model.Options{Model: m, Config: session.Config{Codec: frame.Line{}}})
			ctx, cancel := context.WithTimeout(context.Background(), servertest.IOTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-addr", srv.Addr().String(), "-conns", "4", "-pipeline", "2",
				"-duration", "10m", "-log-level", "info", "-log-format", "json")
			cmd.Env = append(os.Environ(), "ECHOLOAD_RUN_MAIN=1")
			var stdout bytes.Buffer
			cmd.Stdout = &stdout
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var log strings.Builder
			sc := bufio.NewScanner(stderr)
			for sc.Scan() { // up to "measuring": every connection has had its first reply
				log.WriteString(sc.Text() + "\n")
				var rec struct{ Message string }
				if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Message == "measuring" {
					break
				}
			}
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			for sc.Scan() {
				log.WriteString(sc.Text() + "\n")
			}
			err = cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != exitDrained {
				t.Fatalf("exit %d (%v), want %d; stdout:\n%s\nstderr:\n%s", code, err, exitDrained, &stdout, &log)
			}
			for _, want := range []string{"errors       0", "drained      4 connections closed in order by the server",
				"result       drained: nothing failed"} {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("summary lacks %q:\n%s", want, &stdout)
				}
			}
		})
	}
}
