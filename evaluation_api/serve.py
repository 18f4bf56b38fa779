"""One API process of `make run` (local/supervisord.conf starts one per core, API_WORKERS).

    python -m evaluation_api.serve --host 127.0.0.1 --port 8000

uvicorn (uvloop, httptools, no access log) on a listening socket of this process's own, bound with
SO_REUSEPORT, so that several processes share one port and the kernel spreads new connections
evenly among them. With uvicorn's own `--workers` the processes share one socket, and whichever is
awake when a burst of connections arrives takes them all: in one benchmark round every one of 64
clients went to one process, which then used one core of two (docs/ARCHITECTURE.md). The image runs
one process per container and does not need this.
"""

from __future__ import annotations

import argparse
import socket

import uvicorn


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evaluation_api.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        "evaluation_api.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
    )
    uvicorn.Server(config).run(sockets=[listening_socket(args.host, args.port)])


if __name__ == "__main__":
    main()
