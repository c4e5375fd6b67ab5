"""Writes the seed corpora of the conn, ws_conn and ws_scan targets
(fuzz/README.md): a valid handshake and a few valid calls, as frames
(PROTOCOL.md) and in WebSocket frames."""
import os, struct

def uint(n):
    if n < 128: return bytes([n])
    if n < 256: return bytes([0xcc, n])
    if n < 65536: return b'\xcd' + struct.pack('>H', n)
    return b'\xce' + struct.pack('>I', n)
def s(t):
    t = t.encode(); assert len(t) < 32
    return bytes([0xa0 | len(t)]) + t
def arr(*xs): return bytes([0x90 | len(xs)]) + b''.join(xs)
def frame(body): return struct.pack('>I', len(body)) + body
def ref(t, i): return b'\xd6' + bytes([t]) + struct.pack('>I', i)
def call(i, target, m, args=b'\x90', timeout=1000):
    # [1, id, target, method, timeout_ms, args]
    return frame(bytes([0x96]) + uint(1) + uint(i) + uint(target) + s(m) + uint(timeout) + args)
def release(o, n): return frame(arr(uint(4), uint(o), uint(n)))
def cancel(i): return frame(arr(uint(5), uint(i)))
def ping(tok): return frame(arr(uint(7), uint(tok)))
def hello(features=()):
    return frame(bytes([0x96]) + uint(0) + s('remote') + uint(1) + uint(1) + arr(*[s(f) for f in features]) + b'\xc0')

calls = {
    'hello_only': [],
    'nop': [call(1, 0, 'nop')],
    'add': [call(1, 0, 'add', arr(uint(1), uint(2)))],
    'echo': [call(1, 0, 'echo', arr(b'\xc4\x03abc'))],
    'make_release': [call(1, 0, 'make'), release(1, 1), call(2, 0, 'nop')],
    'many_release': [call(1, 0, 'many', arr(uint(3))), release(1, 1), release(2, 1)],
    'back': [call(1, 0, 'back', arr(ref(1, 1)))],
    'take_same': [call(1, 0, 'take', arr(ref(2, 0))), call(2, 0, 'same', arr(ref(1, 1)))],
    'hang_cancel': [call(1, 0, 'hang', arr(uint(10))), cancel(1), ping(9)],
    'fail_ping': [call(1, 0, 'fail'), ping(1), call(2, 0, 'nosuch')],
}

def ws(payload, fin=True, op=2, key=b'\x5a\x5a\x5a\x5a'):
    f = bytes([(0x80 if fin else 0) | op])
    n = len(payload)
    if n < 126: f += bytes([0x80 | n])
    elif n < 65536: f += bytes([0x80 | 126]) + struct.pack('>H', n)
    else: f += bytes([0x80 | 127]) + struct.pack('>Q', n)
    return f + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

UPGRADE = (b'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
           b'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')

def put(d, name, data):
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), 'wb').write(data)

for name, frames in calls.items():
    # conn: bit 0 puts a hello first; one seed with its own hello.
    put('conn', name, b'\x01' + b''.join(frames))
    put('conn', name + '_pipeline', b'\x03' + b''.join(frames))
    # ws_conn: upgrade, hello, the rest cut at 0xfe into binary frames.
    put('ws_conn', name + '_cut', b'\x07' + b'\xfe'.join(frames))
    # ws_conn: upgrade and hello, then the fuzzer's own WebSocket frames.
    put('ws_conn', name + '_raw', b'\x03' + b''.join(ws(f) for f in frames))
put('conn', 'own_hello', b'\x00' + hello(['pipeline']) + call(1, 0, 'nop'))
put('ws_conn', 'own_upgrade', b'\x00' + UPGRADE + ws(hello()) + ws(call(1, 0, 'add', arr(uint(1), uint(2)))))
# Fragments with a ping between, and a pong.
c = call(1, 0, 'echo', arr(b'\xc4\x20' + b'x' * 32))
put('ws_conn', 'fragments', b'\x03' + ws(c[:10], fin=False) + ws(b'p', op=9) + ws(c[10:], op=0) + ws(b'', op=10))

# ws_scan: 8 bytes of generator seed, then a client's stream.
stream = UPGRADE + ws(hello()) + ws(call(1, 0, 'nop'))
put('ws_scan', 'plain', b'\x01' * 8 + stream)
put('ws_scan', 'fragments', b'\x02' * 8 + UPGRADE + ws(hello()) + ws(c[:10], fin=False) + ws(b'p', op=9) + ws(c[10:], op=0))
put('ws_scan', 'large', b'\x07' * 8 + UPGRADE + ws(hello()) + ws(call(1, 0, 'echo', arr(b'\xc5' + struct.pack('>H', 3000) + b'y' * 3000))))
put('ws_scan', 'bare_lf', b'\x05' * 8 + b'\n\nGET / HTTP/1.1\nHost: x\n\n' + ws(hello()) + ws(b'', op=10))
