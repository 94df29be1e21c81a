package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"time"

	"github.com/rs/zerolog"

	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
)

// Errors returned by New and Run; compare with errors.Is. Failures during a
// run (refused connections, mismatches) are not errors of Run: they are
// counted in the Summary.
var (
	// ErrInvalid means the Options cannot describe a run; the message says
	// which field and why.
	ErrInvalid = errors.New("load: invalid options")

	// ErrFDLimit means the file descriptor limit, even raised to its hard
	// limit, cannot hold the connections asked for.
	ErrFDLimit = errors.New("load: not enough file descriptors")

	// ErrPorts means the local port range cannot give every connection its
	// own port towards one server address with the source addresses given.
	ErrPorts = errors.New("load: not enough local ports")
)

// Client selects how the generator drives its connections.
type Client string

// Clients.
const (
	// Epoll drives every connection from a few goroutines, each waiting in
	// epoll_wait on its share of the sockets (Options.Loops of them). It is
	// the default: on this project's 2-core machine it sustains more round
	// trips per core than Goroutine (see the package documentation).
	Epoll Client = "epoll"
	// Goroutine runs one goroutine per connection with blocking net.Conn
	// reads, and writes each batch from a goroutine of its own while it
	// reads: the simple client, kept for comparison.
	Goroutine Client = "goroutine"
)

// Clients lists the client names, for help and error texts.
const Clients = "epoll, goroutine"

// Defaults for zero Options fields.
const (
	DefaultSize        = 64
	DefaultDuration    = 10 * time.Second
	DefaultDialTimeout = 5 * time.Second
	DefaultTimeout     = 5 * time.Second

	// MaxConnecting caps connection attempts in progress at once when Ramp
	// is zero, so that tens of thousands of dials do not overflow the
	// server's accept backlog in one burst.
	MaxConnecting = 512

	// FDReserve is how many descriptors beyond one per connection the
	// generator keeps for itself (epoll, stdio, the runtime's poller).
	FDReserve = 64

	maxPipeline = 1 << 16
)

// Options describes a run. The zero value, with Addr set, is a valid
// configuration: one connection sending 64-byte line frames, pipeline 1,
// closed loop, for 10 seconds.
type Options struct {
	// Addr is the server, host:port. Empty means 127.0.0.1:7007.
	Addr string

	// Codec is the framing the server speaks. Nil means frame.Line{}. With
	// frame.Raw frames have no boundaries: each payload is written as is and
	// exactly as many bytes are read back and compared.
	Codec frame.Codec

	// Conns is the number of connections to open. Zero means 1.
	Conns int

	// Size is the payload of every frame in bytes, at least MinSize. Zero
	// means DefaultSize, or N for fixed:N (where any other size is an error).
	Size int

	// Pipeline is the number of frames each connection keeps in flight.
	// Zero means 1: send, wait for the reply, send the next.
	Pipeline int

	// Duration is how long the measured window lasts, after the warm-up.
	// Zero means DefaultDuration unless Requests is set. With both set, the
	// first one reached ends the run.
	Duration time.Duration

	// Requests ends the run after this many measured frames (sent after the
	// warm-up) have been answered. Zero means no count limit.
	Requests int64

	// Rate makes the run open loop: this many frames per second in total,
	// on a fixed schedule (ConstantPacer), spread round-robin over the
	// connections. Latency is measured from each frame's intended send time,
	// so a stall is counted for every frame it delays (no coordinated
	// omission). Pipeline still caps the frames in flight per connection: a
	// frame due while its connection is full waits, and that wait counts.
	// Zero means closed loop: each connection sends as soon as a reply frees
	// a pipeline slot.
	Rate float64

	// Pacer, if set, schedules an open-loop run instead of Rate.
	Pacer Pacer

	// Ramp is how many new connections to open per second. Zero means as
	// fast as possible, with at most MaxConnecting attempts in progress.
	Ramp float64

	// Sources spreads connections over the source addresses 127.0.0.1,
	// 127.0.0.2, ... 127.0.0.N (connection i uses address i mod N), so that
	// more connections than one address has local ports can reach one
	// server. Zero lets the kernel choose. Needs a loopback IPv4 Addr.
	Sources int

	// FirstSource moves the Sources addresses to start here instead of at
	// 127.0.0.1: several generator processes given ranges that do not
	// overlap draw on local ports of their own, since the ports towards
	// one server address are shared by every process using a source
	// address. Nil means 127.0.0.1; otherwise a loopback IPv4 address, and
	// Sources must be set.
	FirstSource net.IP

	// Warmup is traffic before the measured window; nothing in it is counted
	// in the Summary's figures. Zero means none.
	Warmup time.Duration

	// Idle, instead of load, opens the connections, makes one verified round
	// trip on each, holds them open for Hold, then makes one more verified
	// round trip on each: Summary.ConnsHeld counts those that passed.
	Idle bool

	// Hold is how long Idle mode keeps the connections open. Zero means no
	// wait between the two round trips.
	Hold time.Duration

	// Gate, if set, lines an idle run up with something outside it: Run
	// calls it, and waits for it to return, before the hold once every
	// connection is open and through its first round trip (next is
	// "holding"), and after the hold before the last round trips (next is
	// "verifying"). A driver running several generator processes starts
	// their holds together with it, and reads the servers while nothing
	// moves. It must return soon after ctx (Run's) ends. Idle mode only.
	Gate func(ctx context.Context, next string)

	// DialTimeout bounds each connection attempt. Zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration

	// Timeout bounds the wait for a reply (and for a write to make
	// progress): a connection silent this long while frames are in flight
	// fails with a timeout. Zero means DefaultTimeout.
	Timeout time.Duration

	// Client chooses the client implementation. Empty means Epoll on Linux.
	Client Client

	// Loops is the number of epoll loops (Epoll only), each on its own
	// goroutine with a share of the connections. Zero means GOMAXPROCS.
	Loops int

	// Logger receives a line per phase and per failed connection (at debug
	// level). The zero Logger discards everything.
	Logger zerolog.Logger
}

// config is Options with defaults filled in and derived values.
type config struct {
	Options
	payload  *Payload
	recv     frame.Codec // decodes replies: the codec, or Fixed{Size} for raw
	wire     int         // bytes of one encoded frame
	raddr    *net.TCPAddr
	sources  []net.IP
	fdLimit  session.FDLimit
	portSpan int // local ports per source address
}

func (o Options) prepare() (*config, error) {
	c := &config{Options: o}
	bad := func(format string, a ...any) (*config, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
	}
	if c.Addr == "" {
		c.Addr = session.DefaultAddr
	}
	raddr, err := net.ResolveTCPAddr("tcp", c.Addr)
	if err != nil || raddr.Port == 0 {
		return bad("address %q: want host:port with a port", c.Addr)
	}
	c.raddr = raddr
	if c.Codec == nil {
		c.Codec = frame.Line{}
	}
	switch {
	case c.Conns < 0:
		return bad("conns %d is negative", c.Conns)
	case c.Conns == 0:
		c.Conns = 1
	case c.Conns > maxConns:
		return bad("conns %d: at most %d", c.Conns, maxConns)
	}
	fixed, isFixed := c.Codec.(frame.Fixed)
	switch {
	case c.Size < 0:
		return bad("size %d is negative", c.Size)
	case isFixed && c.Size != 0 && c.Size != fixed.Size:
		return bad("size %d disagrees with the framing %s, whose frames are exactly %d bytes", c.Size, c.Codec, fixed.Size)
	case isFixed:
		c.Size = fixed.Size
	case c.Size == 0:
		c.Size = DefaultSize
	}
	if c.Size < MinSize {
		what := fmt.Sprintf("size %d", c.Size)
		if isFixed {
			what = "framing " + c.Codec.String()
		}
		return bad("%s is under %d bytes, the least that carries a connection id and sequence number for verification", what, MinSize)
	}
	if c.Size > c.Codec.MaxPayload() {
		return bad("size %d is over the %s framing's limit of %d bytes", c.Size, c.Codec, c.Codec.MaxPayload())
	}
	if c.payload, err = NewPayload(c.Size); err != nil {
		return nil, err
	}
	one, err := c.Codec.Append(nil, c.payload.Append(nil, 0, 0))
	if err != nil {
		return bad("framing %s cannot carry a %d-byte payload: %v", c.Codec, c.Size, err)
	}
	c.wire = len(one)
	c.recv = c.Codec
	if _, raw := c.Codec.(frame.Raw); raw {
		c.recv = frame.Fixed{Size: c.Size}
	}
	switch {
	case c.Pipeline < 0 || c.Pipeline > maxPipeline:
		return bad("pipeline %d: want 1 to %d", c.Pipeline, maxPipeline)
	case c.Pipeline == 0:
		c.Pipeline = 1
	}
	if c.Duration < 0 || c.Requests < 0 || c.Warmup < 0 || c.Hold < 0 || c.DialTimeout < 0 || c.Timeout < 0 {
		return bad("durations and counts must not be negative")
	}
	if c.Idle && (c.Duration > 0 || c.Requests > 0 || c.Rate > 0 || c.Pacer != nil || c.Warmup > 0) {
		return bad("idle mode holds connections for Hold; duration, requests, rate and warmup are for load runs")
	}
	if !c.Idle && (c.Hold > 0 || c.Gate != nil) {
		return bad("hold and gate are for idle mode")
	}
	if !c.Idle && c.Duration == 0 && c.Requests == 0 {
		c.Duration = DefaultDuration
	}
	if math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) || c.Rate < 0 {
		return bad("rate %v: want frames per second, 0 for closed loop", c.Rate)
	}
	if c.Rate > 0 && c.Pacer == nil {
		c.Pacer = ConstantPacer{Rate: c.Rate}
	}
	if math.IsNaN(c.Ramp) || math.IsInf(c.Ramp, 0) || c.Ramp < 0 {
		return bad("ramp %v: want connections per second, 0 for as fast as possible", c.Ramp)
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	switch c.Client {
	case "":
		c.Client = defaultClient
	case Goroutine:
	case Epoll:
		if !haveEpoll {
			return bad("client %s is not available on %s", Epoll, runtime.GOOS)
		}
	default:
		return bad("client %q (known: %s)", c.Client, Clients)
	}
	if c.Loops < 0 {
		return bad("loops %d is negative", c.Loops)
	}
	if c.Loops > 0 && c.Client != Epoll {
		return bad("loops applies to the %s client", Epoll)
	}
	switch {
	case c.Client != Epoll:
		c.Loops = 1
	case c.Loops == 0:
		c.Loops = runtime.GOMAXPROCS(0)
	}
	c.Loops = max(min(c.Loops, c.Conns), 1)
	if c.sources, err = sourceAddrs(c.Sources, c.FirstSource, c.raddr); err != nil {
		return nil, err
	}
	if err := c.checkLimits(); err != nil {
		return nil, err
	}
	return c, nil
}
