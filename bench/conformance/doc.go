// Package conformance holds the one test suite that both concurrency models
// must pass: stream framing under every split, many concurrent clients,
// oversized and malformed input, textbook clients, the handler API, limits
// and shutdown. Every test runs against each model; a difference between
// the models is a bug in one of them.
package conformance
