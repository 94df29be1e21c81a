"""The textbook thread per client: socketserver starts a thread for each
connection, and that thread reads and writes with blocking calls, as if
its client were the only one. sendall() loops until every byte is
written, so nothing is left over to keep track of.

It echoes bytes as they arrive, with no framing, so whatever framing a
client speaks comes back intact. Each thread has a stack and a thread
state of its own: this is the model whose memory grows with the clients.

    python3 thread_echo.py [HOST:PORT]    (default 127.0.0.1:7007; port 0 picks one)
"""

import json
import resource
import socketserver
import sys

BUFSIZE = 65536  # bytes per recv, the most the Go servers read at once


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            while data := self.request.recv(BUFSIZE):
                self.request.sendall(data)
        except ConnectionError:  # reset by the client: done, as after a close
            pass


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True  # stopping does not wait for the clients
    # The listen backlog. socketserver's default of 5 drops connects that
    # come in a burst; this is as long as the kernel allows, as Go asks for.
    request_queue_size = 65535


def main():
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7007").rpartition(":")
    # Go raises its soft descriptor limit to the hard one when it starts;
    # do the same, or the default 1,024 caps the connections.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with Server((host, int(port)), Echo) as server:
        # The line echobench waits for, shaped like echoloop's own.
        addr = "%s:%d" % server.server_address[:2]
        print(json.dumps({"level": "info", "message": "listening", "addr": addr}), file=sys.stderr, flush=True)
        server.serve_forever()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
