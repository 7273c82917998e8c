"""Sends requests one at a time over one keep-alive connection and checks
each is answered 200: the load of scripts/instructions-per-request.

usage: drive-requests.py PORT COUNT create|health|position [FIRST]

A create is the seed's multipart body, with a number and device of its own
(numbered from FIRST, so two runs on one store do not collide). A position
is GET check-queue-position of one service, created first (FIRST numbers
it); that create is in both runs of instructions-per-request, so it cancels
out.
"""
import json
import socket
import sys

BOUNDARY = "----WebKitFormBoundary0WnE36LruxJ4S5nu"


def field(name, value):
    return (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
        f'name="{name}"\r\n\r\n{value}\r\n'
    )


def create(seq):
    device = f"bench-device-{seq}"
    body = "".join(
        [
            field("_customer_number", "+1408%07d" % seq),
            field("usr_customer_name", "Bob Markel"),
            field("usr_reason", "billing question"),
            field("_device_notification_id", device),
            field("_device_os", "comet"),
            f"--{BOUNDARY}--\r\n",
        ]
    )
    return (
        "POST /genesys/1/service/callback/chat-delay HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"gms_user: {device}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def position(service_id):
    return (
        f"GET /genesys/1/service/{service_id}/check-queue-position HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n\r\n"
    ).encode()


def health(_seq):
    return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class Connection:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def status(self):
        """Reads one answer (its head and Content-Length body); its status."""
        return self.answer()[0]

    def answer(self):
        """Reads one answer (its head and Content-Length body): its status
        and body."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = self.buf[:end].decode()
                length = 0
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                if len(self.buf) >= end + 4 + length:
                    body = self.buf[end + 4:end + 4 + length]
                    self.buf = self.buf[end + 4 + length:]
                    return head.split()[1], body
            data = self.sock.recv(65536)
            if not data:
                raise SystemExit("the server closed the connection")
            self.buf += data


def main():
    port, count, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    first = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    conn = Connection(port)
    if kind == "position":
        conn.sock.sendall(create(first))
        status, body = conn.answer()
        if status != "200":
            raise SystemExit(f"create: status {status}")
        service_id = json.loads(body)["_id"]
        for _ in range(count):
            conn.sock.sendall(position(service_id))
            status = conn.status()
            if status != "200":
                raise SystemExit(f"check-queue-position: status {status}")
        return
    make = {"create": create, "health": health}[kind]
    for seq in range(first, first + count):
        conn.sock.sendall(make(seq))
        status = conn.status()
        if status != "200":
            raise SystemExit(f"request {seq}: status {status}")


main()
