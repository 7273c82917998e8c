"""Sends requests one at a time over one keep-alive connection and checks
each is answered 200: the load of scripts/instructions-per-request.

usage: drive-requests.py PORT COUNT create|health [FIRST]
A create is the seed's multipart body, with a number and device of its own.
"""
import socket, sys, time
port = int(sys.argv[1]); n = int(sys.argv[2]); kind = sys.argv[3]
B = "----WebKitFormBoundary0WnE36LruxJ4S5nu"
def create(seq):
    dev = f"bench-device-{seq}"
    f = lambda k, v: f"--{B}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
    body = f("_customer_number", "+1408%07d" % seq) + f("usr_customer_name","Bob Markel") + f("usr_reason","billing question") + f("_device_notification_id", dev) + f("_device_os","comet") + f"--{B}--\r\n"
    return (f"POST /genesys/1/service/callback/chat-delay HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={B}\r\ngms_user: {dev}\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()
def health(seq):
    return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
make = create if kind == "create" else health
s = socket.create_connection(("127.0.0.1", port))
buf = b""
def read_response():
    global buf
    while True:
        i = buf.find(b"\r\n\r\n")
        if i >= 0:
            head = buf[:i].decode()
            cl = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.lower() == "content-length": cl = int(v)
            if len(buf) >= i + 4 + cl:
                status = head.split()[1]
                buf = buf[i+4+cl:]
                return status
        d = s.recv(65536)
        if not d: raise SystemExit("closed")
        buf += d
off = int(sys.argv[4]) if len(sys.argv) > 4 else 0
for i in range(n):
    s.sendall(make(off + i))
    st = read_response()
    if st != "200": raise SystemExit(f"status {st}")
