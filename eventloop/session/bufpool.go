package session

import (
	"math/bits"
	"sync"
	"unsafe"
)

// BufPool recycles byte slices in power-of-two size classes. A connection
// that grows a buffer for a large frame takes it here and gives it back when
// the frame is done, so frames that straddle reads neither allocate one
// buffer each nor leave the old, smaller buffers as garbage while they grow:
// under a burst of large partial frames that garbage would otherwise be
// counted nowhere and double the resident size. The zero value is ready;
// it is safe for concurrent use. Memory in the pool is not held for any
// client: the collector frees it after two cycles.
type BufPool struct {
	classes [48]sync.Pool // class i holds arrays of 1<<i bytes, as *byte
}

// Get returns a slice of length n whose capacity is n rounded up to a power
// of two. Its contents are undefined.
func (p *BufPool) Get(n int) []byte {
	if n <= 0 {
		return nil
	}
	i := bits.Len(uint(n - 1))
	if i >= len(p.classes) {
		return make([]byte, n)
	}
	if ptr, _ := p.classes[i].Get().(*byte); ptr != nil {
		return unsafe.Slice(ptr, 1<<i)[:n]
	}
	return make([]byte, n, 1<<i)
}

// Put gives b's array back for reuse; b must not be used afterwards. Arrays
// whose capacity is not a power of two (not from Get) are left to the
// collector.
func (p *BufPool) Put(b []byte) {
	c := cap(b)
	if c == 0 || c&(c-1) != 0 {
		return
	}
	i := bits.Len(uint(c - 1))
	if i >= len(p.classes) {
		return
	}
	// Keep the array's first byte's address, not the slice: storing a
	// pointer in the interface does not allocate.
	p.classes[i].Put(unsafe.SliceData(b[:c]))
}
