// Package load is echoloop's load generator: it opens connections to an
// echo server, sends frames in the server's framing (package frame), and
// verifies every reply byte-exact against what its own connection sent,
// in order. It reports throughput, latency percentiles from an HDR
// histogram, failed connections by kind with hints, mismatches, and its own
// CPU use, in a Summary that is also echoload's -json output.
//
// The shape follows vegeta's lib: Options and New (the attack), Pacer and
// ConstantPacer (the schedule of an open-loop run), Summary (the metrics),
// and Summary.WriteText and WriteJSON (the reporters).
//
// # A run
//
//	connect   dial every connection (Ramp per second, or at most
//	          MaxConnecting at once), and make one verified round trip on
//	          each; not measured
//	load      warm-up (not measured), then the measured window: Duration,
//	          or until Requests measured frames are answered
//	   or
//	idle      hold the connections for Hold, then one more verified round
//	          trip on each (Summary.ConnsHeld counts those that pass);
//	          Options.Gate, if set, is waited for before and after the hold
//	drain     frames sent in the window are awaited (within Timeout)
//
// Every phase ends by itself: each connection attempt is bounded by
// DialTimeout, each wait for progress by Timeout, the load by Duration or
// Requests (a Gate is bounded by whoever supplies it). Cancelling the
// context ends the window at once.
//
// # Verification
//
// A payload carries its connection id and sequence number in its first
// MinSize bytes, in printable letters, and the rest is derived from both
// (see Payload), so replies are checked against a regenerated payload and
// nothing sent is stored. A reply for another connection, out of order,
// with a byte dropped, added or changed, or with no frame sent for it, is
// a mismatch; its connection is closed, since its stream can no longer be
// trusted. Raw framing has no frame boundaries: each payload is written as
// is and exactly as many bytes are read back and compared. Verification
// assumes an echo server: an ack or discard server shows as mismatches or
// timeouts.
//
// A server that closes a connection in order (EOF after whole, verified
// replies, on a connection it had answered), as one draining on SIGTERM
// does, has not failed: the connection counts as drained
// (Summary.ConnsDrained) and the frames it had in flight as unanswered,
// not as errors. A close in the middle of a reply, or before the first
// one, is an error of kind Closed.
//
// # Clients
//
// Epoll (the default on Linux) runs Options.Loops event loops, each a
// goroutine with its own epoll instance: it parks in the runtime's poller
// when idle and makes non-blocking reads and writes as raw system calls.
// Goroutine runs one goroutine per connection with blocking net.Conn reads;
// each batch of frames is written by a short-lived goroutine of its own
// while the connection's goroutine goes on reading replies, so a server
// that stops reading until its replies are read cannot deadlock it.
// Measured (before that change; not measured again since) on this project's 2-core AMD EPYC VM, client pinned to CPU 1
// with taskset and server pinned to CPU 0, 100 connections, 64-byte line
// frames, pipeline 1, closed loop, medians of interleaved runs:
//
//	server (at HEAD)    client      round trips/s   client CPU µs per round trip
//	goroutine model     epoll            82,400       11.3
//	goroutine model     goroutine        74,000       12.8
//	eventloop model     epoll            66,000       12.4   (server saturated)
//	eventloop model     goroutine        70,400       13.6
//
// About 92% of the epoll client's CPU is in the kernel's loopback TCP path
// (perf), so there is little left to win in user space. With 19,000 idle
// connections the epoll client's resident memory peaked at 11 MB against
// 245 MB for the goroutine client. The goroutine client is kept for
// comparison and for systems without epoll.
//
// # Concurrency and buffers
//
// A Load runs once; Progress and Config are safe from any goroutine while
// it runs. A Payload is immutable and safe for concurrent use; the slices
// Append returns are the caller's. A Summary owns all its data.
package load
