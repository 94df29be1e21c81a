"""The textbook select loop: one thread waits on every socket at once and
serves whichever is ready (selectors picks epoll on Linux, where select()
itself stops at 1,024 descriptors).

It echoes bytes as they arrive, with no framing, so whatever framing a
client speaks comes back intact. Unlike the selectors docs' example it
does not hope that send() takes everything: what send() leaves is kept,
and that client is not read again until it is written.

    python3 select_echo.py [HOST:PORT]    (default 127.0.0.1:7007; port 0 picks one)
"""

import json
import resource
import selectors
import socket
import sys

BUFSIZE = 65536  # bytes per recv, the most the Go servers read at once


def serve(listener):
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    unsent = {}  # client socket -> the bytes send() did not take yet

    def close(conn):
        sel.unregister(conn)
        unsent.pop(conn, None)
        conn.close()

    def send(conn, data, events):
        try:
            sent = conn.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:  # reset by the client, and the like
            close(conn)
            return
        if sent < len(data):
            unsent[conn] = data[sent:]
            if events != selectors.EVENT_WRITE:
                sel.modify(conn, selectors.EVENT_WRITE)  # stop reading it
        elif events != selectors.EVENT_READ:
            sel.modify(conn, selectors.EVENT_READ)

    while True:
        for key, _ in sel.select():
            conn = key.fileobj
            if conn is listener:
                try:
                    conn, _ = listener.accept()
                except OSError:  # the client gave up before we got to it
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
            elif conn in unsent:
                send(conn, unsent.pop(conn), key.events)
            else:
                try:
                    data = conn.recv(BUFSIZE)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    send(conn, data, key.events)
                else:
                    close(conn)


def main():
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7007").rpartition(":")
    # Go raises its soft descriptor limit to the hard one when it starts;
    # do the same, or the default 1,024 caps the connections.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # A backlog as long as the kernel allows (net.core.somaxconn caps it),
    # as Go asks for: with a short one, a burst of connects is dropped.
    listener = socket.create_server((host, int(port)), backlog=65535)
    listener.setblocking(False)
    # The line echobench waits for, shaped like echoloop's own.
    addr = "%s:%d" % listener.getsockname()[:2]
    print(json.dumps({"level": "info", "message": "listening", "addr": addr}), file=sys.stderr, flush=True)
    serve(listener)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
