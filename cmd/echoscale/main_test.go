package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"echoloop/bench/scale"
)

func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-conns", "lots"}, `invalid value "lots" for flag -conns`},
		{[]string{"-nope"}, "flag provided but not defined: -nope"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-conns", "1000000", "-servers", "1"}, "use 51 servers or more"},
		{[]string{"-models", "eventloop,threads"}, `model "threads"`},
		{[]string{"-servers", "0"}, "-servers, -generators and -sources must be at least 1"},
		{[]string{"-hold", "-1s"}, "-hold and -ramp must not be negative"},
		{[]string{"-connect-timeout", "0s"}, "-connect-timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stderr bytes.Buffer
			// -out keeps a run that should have been refused out of the tree.
			args := append([]string{"-out", t.TempDir()}, tt.args...)
			if code := run(context.Background(), args, &stderr); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(stderr.String(), tt.want) || !strings.HasPrefix(stderr.String(), "echoscale: ") {
				t.Errorf("stderr %q, want a line containing %q", stderr.String(), tt.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &stderr); code != exitOK || !strings.Contains(stderr.String(), "-generators") {
		t.Errorf("exit %d, help:\n%s", code, &stderr)
	}
}

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	res := &scale.Result{Schema: scale.Schema, Command: "go run ./cmd/echoscale", Plan: scale.Plan{Conns: 10, Servers: 1, Generators: 1},
		Models: []scale.Model{{Model: "eventloop", OK: true, Totals: scale.Totals{ConnsAsked: 10, ConnsHeld: 10}}}}
	if err := write(dir, res); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back scale.Result
	if err := json.Unmarshal(b, &back); err != nil || back.Models[0].Totals.ConnsHeld != 10 || back.Command != res.Command {
		t.Errorf("results.json read back as %+v (%v)", back, err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "RESULTS.md"))
	if err != nil || !strings.Contains(string(md), "| eventloop | 10 / 10 | 0 |") {
		t.Errorf("RESULTS.md (%v):\n%s", err, md)
	}
}
