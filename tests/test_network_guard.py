"""The conftest guard: a test may talk to this machine (loopback) and to nothing else."""

import socket
import threading

import pytest

GUARD = "only loopback connections are allowed"


def test_non_loopback_connection_fails():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        with pytest.raises(RuntimeError, match=GUARD):
            s.connect(("93.184.216.34", 80))
        with pytest.raises(RuntimeError, match=GUARD):
            s.connect_ex(("10.0.0.1", 443))


def test_name_resolution_of_remote_host_fails():
    with pytest.raises(RuntimeError, match=GUARD):
        socket.getaddrinfo("huggingface.co", 443)
    with pytest.raises(RuntimeError, match=GUARD):
        socket.create_connection(("huggingface.co", 443), timeout=1)


def test_loopback_connection_works_both_ways():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def echo() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(conn.recv(16).upper())

        thread = threading.Thread(target=echo)
        thread.start()
        port = server.getsockname()[1]
        with socket.create_connection(("localhost", port), timeout=5) as client:  # name lookup of localhost too
            client.sendall(b"ping")
            assert client.recv(16) == b"PING"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            assert probe.connect_ex(("127.0.0.1", port)) == 0  # the kernel accepts into the listen backlog
        thread.join(timeout=5)
        assert not thread.is_alive()
