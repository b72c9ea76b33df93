# A WebSocket reader on a connection with a small MSS, for sendpath.test.mjs.
#
# Node cannot set TCP_MAXSEG on a TCP socket. With a 536-byte MSS the
# server's send buffer to this reader stays small, so once the reader stops
# reading the server's writes of large frames end inside a frame (partial
# writes), which is what the test needs.
#
# Usage: python3 small-mss-reader.py PORT ROOM CLIENT [CAFILE]
# Protocol with the test on stdin/stdout, one line each:
#   -> "ready"                after hello and subscribe were answered
#   <- "ping K"               send K WebSocket pings, then {"type":"ping","id":999999}
#   -> "pinged"
#   <- "read N"               read until N fwds, a pong and the id-999999 reply
#   -> one JSON line          {"fwds": [[seq, prev, checksum, payload length], ...],
#                              "pongs": [payloads], "order": [kinds of frames in
#                              arrival order], "errors": [...]}
# Every frame is checked: FIN set, no RSV bits, text or pong or close only,
# text is UTF-8 JSON. Anything else is reported in "errors" and ends the read.
import base64
import json
import os
import socket
import ssl
import struct
import sys

port, room, client = int(sys.argv[1]), sys.argv[2], sys.argv[3]
cafile = sys.argv[4] if len(sys.argv) > 4 else None

raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# A small MSS keeps the server's send buffer small (Linux sizes it from the
# MSS; on loopback the MSS is 64 KB and the buffer grows to megabytes): then
# its writes of large frames are taken in part once this reader stops reading.
raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
raw.settimeout(120)
raw.connect(("127.0.0.1", port))
if cafile:
    ctx = ssl.create_default_context(cafile=cafile)
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
else:
    sock = raw

buf = bytearray()


def recv_exact(n):
    while len(buf) < n:
        chunk = sock.recv(262144)
        if not chunk:
            raise EOFError("connection closed")
        buf.extend(chunk)
    out = bytes(buf[:n])
    del buf[:n]
    return out


def send_frame(opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(head + mask + body)


def read_frame():
    b0, b1 = recv_exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", recv_exact(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", recv_exact(8))[0]
    if b1 & 0x80:
        raise ValueError("server frame is masked")
    return b0, recv_exact(n)


def send_json(m):
    send_frame(1, json.dumps(m).encode())


def next_message():
    while True:
        b0, payload = read_frame()
        if b0 != 0x81:
            raise ValueError("unexpected frame 0x%02x before the test started" % b0)
        return json.loads(payload.decode("utf-8"))


key = base64.b64encode(os.urandom(16)).decode()
sock.sendall((
    "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: movex.v1\r\n\r\n" % key
).encode())
while b"\r\n\r\n" not in buf:
    chunk = sock.recv(4096)
    if not chunk:
        raise EOFError("closed during the handshake")
    buf.extend(chunk)
head, rest = bytes(buf).split(b"\r\n\r\n", 1)
buf = bytearray(rest)
if b" 101 " not in head.split(b"\r\n")[0]:
    raise ValueError("handshake refused: %r" % head)

send_json({"type": "hello", "client": client})
assert next_message()["type"] == "welcome"
send_json({"type": "subscribe", "id": 1, "room": room})
assert next_message()["type"] == "snapshot"
print("ready", flush=True)

pings = 0
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "ping":
        pings = int(cmd[1])
        for i in range(pings):
            send_frame(9, b"p%d" % i)
        send_json({"type": "ping", "id": 999999})
        print("pinged", flush=True)
    elif cmd[0] == "read":
        want = int(cmd[1])
        fwds, order, errors = [], [], []
        pongs, replied = [], False
        try:
            # lws answers a ping that arrives while another's pong is still
            # pending with nothing (RFC 6455 5.5.3 lets it skip pongs); what
            # it answers is written before the reply to our text ping
            while len(fwds) < want or not pongs or not replied:
                b0, payload = read_frame()
                if b0 & 0x70:
                    raise ValueError("RSV bits set")
                if not b0 & 0x80:
                    raise ValueError("fragmented server frame")
                op = b0 & 0x0F
                if op == 0xA:
                    pongs.append(payload.decode())
                    order.append("pong")
                    continue
                if op != 1:
                    raise ValueError("unexpected opcode %d" % op)
                m = json.loads(payload.decode("utf-8"))
                order.append(m["type"])
                if m["type"] == "fwd":
                    value = m["action"]["payload"][0]["value"]
                    fwds.append([m["seq"], m["prev"], m["checksum"], len(value)])
                elif m["type"] == "pong" and m.get("id") == 999999:
                    replied = True
                else:
                    errors.append("unexpected message %s" % m["type"])
        except Exception as e:  # reported to the test, which fails on it
            errors.append("%s: %s" % (type(e).__name__, e))
        print(json.dumps({"fwds": fwds, "pongs": pongs, "order": order, "errors": errors}), flush=True)
        break
sock.close()
