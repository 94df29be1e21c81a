package frame_test

import (
	"fmt"

	"echoloop/eventloop/frame"
)

// Decoding a stream that holds two length-prefixed frames and the start of a
// third: Decode takes one frame at a time and asks for more when the rest is
// partial.
func ExampleLength_Decode() {
	codec := frame.Length{}
	stream, _ := codec.Append(nil, []byte("hi"))
	stream, _ = codec.Append(stream, []byte(""))
	stream = append(stream, 0, 0, 0, 5, 'p', 'a') // 5 announced, 2 arrived
	for {
		payload, n, err := codec.Decode(stream)
		if err != nil {
			fmt.Printf("%v: %d bytes kept, %d needed\n", err, len(stream), codec.Need(stream))
			return
		}
		fmt.Printf("frame %q (%d bytes on the wire)\n", payload, n)
		stream = stream[n:]
	}
	// Output:
	// frame "hi" (6 bytes on the wire)
	// frame "" (4 bytes on the wire)
	// frame: incomplete frame: 6 bytes kept, 9 needed
}

func ExampleParse() {
	for _, spec := range []string{"line", "length", "fixed:16", "raw", "xml"} {
		c, err := frame.Parse(spec, 0)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(c, c.MaxPayload())
	}
	// Output:
	// line 65536
	// length 1048576
	// fixed:16 16
	// raw 9223372036854775807
	// frame: unknown framing "xml" (known: line, length, fixed:N, raw)
}
