package eventloop

import (
	"reflect"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/buffer/elastic"
)

// pendingOutput copies the replies gnet still holds unsent for gc: its
// outbound buffer, which gnet v2.10.0 keeps in the unexported field
// outboundBuffer of its connection type and exposes only as a byte count.
// gnet makes one non-blocking attempt to write them when it closes a
// connection and then drops the rest, so a peer that half-closed and is
// still reading would lose replies; OnClose, which runs before that
// attempt, uses this to hand them to a goroutine instead. Reading the field
// costs nothing until a close needs it, where keeping a copy of every
// backed-up reply would cost a copy per write.
//
// It returns ok false when the field is not where this gnet version keeps
// it (the half-close test fails loudly then), or holds nothing.
func pendingOutput(gc gnet.Conn) (pending []byte, ok bool) {
	ob := outboundBuffer(gc)
	if ob == nil || ob.IsEmpty() {
		return nil, false
	}
	chunks, err := ob.Peek(-1)
	if err != nil {
		return nil, false
	}
	for _, c := range chunks {
		pending = append(pending, c...)
	}
	return pending, len(pending) > 0
}

var elasticBuffer = reflect.TypeFor[elastic.Buffer]()

// outboundBuffer finds gc's outbound buffer, or nil.
func outboundBuffer(gc gnet.Conn) *elastic.Buffer {
	v := reflect.ValueOf(gc)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	f := v.Elem().FieldByName("outboundBuffer")
	if !f.IsValid() || f.Type() != elasticBuffer {
		return nil
	}
	return (*elastic.Buffer)(unsafe.Pointer(f.UnsafeAddr()))
}
