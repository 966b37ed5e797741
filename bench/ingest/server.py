"""The feeds' web server for ``bench.ingest``: ``python server.py PORT`` serves the current folder.

``http.server``'s own command line listens with a backlog of 5: when a poller opens more
connections at once, the kernel drops the extra SYNs and the client retries them a second
later, so the benchmark measured TCP's retry timer instead of the poller. A real web server
listens with a backlog in the hundreds; so does this one. It answers ``If-Modified-Since``
with 304 as ``http.server`` does (it is ``http.server``'s handler).
"""

from __future__ import annotations

import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    request_queue_size = 512


def main() -> None:
    _Server(("127.0.0.1", int(sys.argv[1])), SimpleHTTPRequestHandler).serve_forever()


if __name__ == "__main__":
    main()
