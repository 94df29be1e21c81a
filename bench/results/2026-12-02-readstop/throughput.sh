#!/bin/bash
# throughput.sh OLD NEW SIZE PIPELINE CONNS PAIRS: runs two echoloop builds
# alternately, each on CPU 0 with echoload on CPU 1 for 4 s, and prints the
# frames per second echoload verified.
# Run from the repository's root.
old=$1 new=$2 size=$3 pipe=$4 conns=$5 pairs=$6
load=$(mktemp -d)/echoload
go build -o "$load" ./cmd/echoload || exit 1
for r in $(seq "$pairs"); do
  for bin in "$old" "$new"; do
    port=$((7100 + RANDOM % 500))
    taskset -c 0 "$bin" -addr 127.0.0.1:$port -framing length -log-level error >/dev/null 2>&1 &
    pid=$!
    for i in $(seq 50); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
    fps=$(taskset -c 1 "$load" -addr 127.0.0.1:$port -framing length -size "$size" \
      -pipeline "$pipe" -conns "$conns" -duration 4s -json |
      python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.0f errors=%d" % (d["frames_per_s"], d["errors_total"]))')
    kill $pid; wait $pid 2>/dev/null
    echo "$bin ${size}x${pipe}x${conns} fps=$fps"
  done
done
