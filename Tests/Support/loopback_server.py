"""Shared start-up of the tests' Python servers: a threading HTTP server on 127.0.0.1 on a free
port, whose number is written (atomically) to the given file before serving."""
import os
from http.server import ThreadingHTTPServer


def serve(handler, port_file):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()
