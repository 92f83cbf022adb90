#!/usr/bin/env python3
"""Record what one TCP client sends first.

Usage: listen.py OUTPUT_FILE [PORT]

Listens on 127.0.0.1:PORT (0 = any; the port is printed), accepts one connection,
records the bytes until the client has been silent for 1.5 s (or closes), writes them
to OUTPUT_FILE, prints the size of each recv() on stderr and closes without answering.
"""
import socket
import sys


def main() -> None:
    out = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1)
    print(listener.getsockname()[1], flush=True)
    conn, _ = listener.accept()
    conn.settimeout(1.5)
    data, reads = b"", []
    try:
        while chunk := conn.recv(65536):
            data += chunk
            reads.append(len(chunk))
    except socket.timeout:
        pass
    with open(out, "wb") as f:
        f.write(data)
    print("reads", reads, "total", len(data), file=sys.stderr, flush=True)
    conn.close()
    listener.close()


if __name__ == "__main__":
    main()
