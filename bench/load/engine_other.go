//go:build !linux

package load

import "errors"

const (
	haveEpoll     = false
	defaultClient = Goroutine
)

func newEpollEngine(*Load) (engine, error) {
	return nil, errors.New("load: the epoll client needs Linux")
}

func setBindNoPort(int) error { return nil }
