package eventloop_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"

	"echoloop/eventloop"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// A line-framed server that answers every line in upper case, on a free
// port, and a client that talks to it.
func Example() {
	upper := handlers.HandlerFunc(func(c handlers.Conn, line []byte) {
		_ = c.Reply([]byte(strings.ToUpper(string(line))))
	})
	srv, err := eventloop.New(eventloop.Options{Config: session.Config{
		Addr: "127.0.0.1:0", Codec: frame.Line{}, Handler: upper,
	}})
	if err != nil {
		panic(err)
	}
	go srv.ListenAndServe()
	<-srv.Ready()
	defer srv.Shutdown(context.Background())

	conn, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "hello\nselect-style\n")
	r := bufio.NewReader(conn)
	for range 2 {
		reply, _ := r.ReadString('\n')
		fmt.Print(reply)
	}
	// Output:
	// HELLO
	// SELECT-STYLE
}
