package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"echoloop/eventloop/proxyproto"
)

// TestDeployFiles keeps deploy/ in step with the command: every echoloop
// flag the examples give (the commented ones included) parses, Kubernetes'
// grace period covers -drain-delay and -shutdown-timeout, the HAProxy
// example's checks see a drain before its -drain-delay ends, and haproxy
// (when installed) accepts the configuration.
func TestDeployFiles(t *testing.T) {
	t.Run("kubernetes.yaml", func(t *testing.T) {
		text := readDeploy(t, "kubernetes.yaml")
		// Container args, one a line: "- -flag=value", or "# - -flag=value".
		var args []string
		for _, m := range regexp.MustCompile(`(?m)^\s*(?:#\s*)?- (-[a-z-]+=\S+)\s*$`).FindAllStringSubmatch(text, -1) {
			args = append(args, m[1])
		}
		f := parseDeployFlags(t, args)
		if f.drainTO == 0 || f.proxy == proxyproto.Off {
			t.Errorf("args %q: want -drain-delay and (commented) -proxy-protocol among them", args)
		}
		m := regexp.MustCompile(`terminationGracePeriodSeconds: (\d+)`).FindStringSubmatch(text)
		if m == nil {
			t.Fatal("no terminationGracePeriodSeconds")
		}
		grace, _ := strconv.Atoi(m[1])
		if need := f.drainTO + f.stopTO; time.Duration(grace)*time.Second <= need {
			t.Errorf("terminationGracePeriodSeconds %d does not cover -drain-delay %v + -shutdown-timeout %v", grace, f.drainTO, f.stopTO)
		}
		for _, probe := range []string{"path: /readyz", "path: /healthz"} {
			if !strings.Contains(text, probe) {
				t.Errorf("no probe with %s", probe)
			}
		}
	})
	t.Run("haproxy.cfg", func(t *testing.T) {
		text := readDeploy(t, "haproxy.cfg")
		// The backend's command line, in the comment at the top.
		m := regexp.MustCompile(`(?m)^#\s+echoloop ((?:.*\\\n#\s+)*.*)$`).FindStringSubmatch(text)
		if m == nil {
			t.Fatal("no echoloop command line in the comments")
		}
		line := regexp.MustCompile(`\\\n#\s+`).ReplaceAllString(m[1], " ")
		f := parseDeployFlags(t, strings.Fields(line))
		if f.proxy != proxyproto.V2 || !strings.Contains(text, "send-proxy-v2") {
			t.Errorf("-proxy-protocol %s with the servers' send-proxy-v2: want v2", f.proxy)
		}
		c := regexp.MustCompile(`default-server inter (\S+) fall (\d+)`).FindStringSubmatch(text)
		if c == nil {
			t.Fatal("no default-server inter ... fall ...")
		}
		inter, err := time.ParseDuration(c[1])
		if err != nil {
			t.Fatal(err)
		}
		fall, _ := strconv.Atoi(c[2])
		if seen := time.Duration(fall) * inter; f.drainTO <= seen {
			t.Errorf("-drain-delay %v ends before HAProxy sees a drain (inter %v x fall %d)", f.drainTO, inter, fall)
		}
		bin := haproxyPath()
		if bin == "" {
			t.Skip("haproxy is not installed: the configuration is not checked (apt-get install -y haproxy)")
		}
		out, err := exec.Command(bin, "-c", "-f", "../../deploy/haproxy.cfg").CombinedOutput()
		if err != nil {
			t.Errorf("haproxy -c: %v\n%s", err, out)
		}
	})
}

func readDeploy(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func parseDeployFlags(t *testing.T, args []string) *flags {
	t.Helper()
	f, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatalf("echoloop %s: %v", strings.Join(args, " "), err)
	}
	return f
}

// TestREADMEFlags checks that the README's flag table has a row for every
// flag -h lists.
func TestREADMEFlags(t *testing.T) {
	var usage bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &usage); code != exitOK {
		t.Fatalf("-h: exit %d", code)
	}
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(b), "\n## Flags\n")
	table, _, _ = strings.Cut(table, "\n## ")
	names := regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(usage.String(), -1)
	if len(names) < 20 {
		t.Fatalf("found %d flags in the usage:\n%s", len(names), usage.String())
	}
	for _, m := range names {
		if !strings.Contains(table, "`-"+m[1]+"`") {
			t.Errorf("README's flag table has no `-%s`", m[1])
		}
	}
}
