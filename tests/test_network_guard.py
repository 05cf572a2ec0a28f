import socket

import pytest


def test_non_loopback_connection_fails():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(RuntimeError, match="only loopback"):
            s.connect(("93.184.216.34", 80))
    finally:
        s.close()


def test_name_resolution_of_remote_host_fails():
    with pytest.raises(RuntimeError, match="only loopback"):
        socket.getaddrinfo("huggingface.co", 443)


def test_loopback_connection_allowed():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        client.connect(server.getsockname())
    finally:
        client.close()
        server.close()
