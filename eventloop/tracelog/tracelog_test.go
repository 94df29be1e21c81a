package tracelog

import (
	"bytes"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"echoloop/eventloop/session"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

var read = session.Read{
	Conn: 7, Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40112},
	In: 17, Frames: 1, Sizes: []int{16}, Carried: 1, Out: 16, Writes: 1,
}

// lines decodes the JSON lines in buf.
func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	buf.Reset()
	return out
}

func TestJSONLine(t *testing.T) {
	var buf bytes.Buffer
	tl := New(zerolog.New(&buf), Options{})
	tl.TraceRead(&read)
	got := lines(t, &buf)
	want := map[string]any{
		"level": "info", "message": "read", "conn": 7.0, "remote": "127.0.0.1:40112",
		"in": 17.0, "frames": 1.0, "sizes": []any{16.0}, "carried": 1.0, "out": 16.0, "writes": 1.0,
	}
	if len(got) != 1 || !equalJSON(got[0], want) {
		t.Errorf("line %v, want %v", got, want)
	}
}

func equalJSON(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestConsoleLineReadsInOrder(t *testing.T) {
	var buf bytes.Buffer
	w := zerolog.ConsoleWriter{Out: &buf, NoColor: true, PartsExclude: []string{zerolog.TimestampFieldName}, FieldsOrder: Fields}
	tl := New(zerolog.New(w), Options{})
	tl.TraceRead(&read)
	want := "INF read conn=7 remote=127.0.0.1:40112 in=17 frames=1 sizes=[16] carried=1 out=16 writes=1\n"
	if buf.String() != want {
		t.Errorf("console line\n%q, want\n%q", buf.String(), want)
	}
}

func TestRateLimitDropsAndCounts(t *testing.T) {
	var buf bytes.Buffer
	clock := &fakeClock{now: time.Unix(1000, 0)}
	tl := New(zerolog.New(&buf), Options{Burst: 3, Rate: 2, Now: clock.Now})
	for range 10 {
		tl.TraceRead(&read)
	}
	if got := lines(t, &buf); len(got) != 3 {
		t.Fatalf("%d lines from a burst of 3, want 3", len(got))
	}

	clock.now = clock.now.Add(time.Second) // room for 2 more
	for range 5 {
		tl.TraceRead(&read)
	}
	got := lines(t, &buf)
	if len(got) != 2 {
		t.Fatalf("%d lines a second later at 2/s, want 2", len(got))
	}
	if got[0]["dropped"] != 7.0 || got[1]["dropped"] != nil {
		t.Errorf("dropped = %v, %v; want 7 on the first line after the drops, none on the next", got[0]["dropped"], got[1]["dropped"])
	}

	tl.Flush() // the 3 dropped since
	got = lines(t, &buf)
	if len(got) != 1 || got[0]["message"] != "trace lines dropped" || got[0]["dropped"] != 3.0 {
		t.Errorf("Flush logged %v, want one line with dropped 3", got)
	}
	tl.Flush()
	if got := lines(t, &buf); len(got) != 0 {
		t.Errorf("Flush with nothing dropped logged %v", got)
	}

	clock.now = clock.now.Add(time.Hour) // the burst refills, no more
	for range 5 {
		tl.TraceRead(&read)
	}
	if got := lines(t, &buf); len(got) != 3 {
		t.Errorf("%d lines after an hour's pause, want the burst of 3", len(got))
	}
}

func TestDefaults(t *testing.T) {
	o := New(zerolog.Nop(), Options{}).Options()
	if o.Burst != DefaultBurst || o.Rate != DefaultRate || o.Now == nil {
		t.Errorf("defaults %+v", o)
	}
}
