"""`make run`'s API processes each listen on a socket of their own on one port (evaluation_api/serve.py):
the kernel spreads connections among them, so a burst of clients never lands on one process only.
(tests/local/test_make_run.py runs the real processes.)"""

from __future__ import annotations

import select
import socket

from evaluation_api.serve import listening_socket


def test_processes_share_the_port_and_a_burst_of_connections_is_spread_among_them() -> None:
    first = listening_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = listening_socket("127.0.0.1", port)  # without SO_REUSEPORT: EADDRINUSE
    clients: list[socket.socket] = []
    try:
        for sock in (first, second):
            sock.listen(128)
            sock.setblocking(False)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(64)]
        accepted = {first: 0, second: 0}
        while sum(accepted.values()) < len(clients):
            ready, _, _ = select.select([first, second], [], [], 5)
            assert ready, f"only {sum(accepted.values())} of {len(clients)} connections arrived"
            for sock in ready:
                connection, _ = sock.accept()
                connection.close()
                accepted[sock] += 1
        # Spread by the connection's addresses: all 64 on one socket has a chance of 2 in 2**64.
        assert accepted[first] > 0 and accepted[second] > 0, accepted
    finally:
        for client in clients:
            client.close()
        first.close()
        second.close()
