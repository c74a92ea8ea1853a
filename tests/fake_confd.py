"""A stand-in for ganeti-confd: a UDP server answering config queries.

Written from Ganeti's server (src/Ganeti/Confd/Server.hs, Utils.hs), not
from our client: a request is `plj0` + {"msg", "salt", "hmac"} with the
salt a Unix time within 300 s of ours and the HMAC-SHA1 of salt + msg;
an unverifiable request gets no answer at all.  The answer is `plj0` +
{"msg": reply, "salt": <the request's rsalt>, "hmac": HMAC(rsalt + reply)}.
Config query (type 10) follows RFC 6901 pointers into `config`; a pointer
that names nothing gets status 1 with answer 2 (argument error), as
queryArgumentError does.  `mode` makes it misbehave.
"""

import hmac
import json
import socket
import threading
import time


def _sign(key, salt, msg):
    return hmac.new(key, (salt + msg).encode(), "sha1").hexdigest()


def _lookup(config, path):
    value = config
    for token in path.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and token in value:
            value = value[token]
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            raise KeyError(path)
    return value


class FakeConfd:
    """Serves `config` on `address` (port 0: a free one) until stop()."""

    def __init__(self, key, config, serial=7, mode="ok", address="127.0.0.1",
                 port=0):
        self.key = key
        self.config = config
        self.serial = serial
        self.mode = mode      # ok, silent, garbage, badsig, wrongsalt, nested, nonascii,
                              # surrogate
        self.requests = []
        self.sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET,
                                  socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def stop(self):
        self.running = False
        self.thread.join(5)
        self.sock.close()

    def _serve(self):
        while self.running:
            try:
                data, peer = self.sock.recvfrom(4096)  # as confd's recvFrom
            except socket.timeout:
                continue
            answer = self.answer(data)
            if answer is not None:
                self.sock.sendto(answer, peer)

    def answer(self, data):
        if not data.startswith(b"plj0"):
            return None
        outer = json.loads(data[4:])
        if not hmac.compare_digest(_sign(self.key, outer["salt"], outer["msg"]),
                                   outer["hmac"]):
            return None
        if abs(int(outer["salt"]) - time.time()) > 300:
            return None
        request = json.loads(outer["msg"])
        self.requests.append(request)
        if self.mode == "silent":
            return None
        if self.mode == "garbage":
            return b"plj0{not json"
        if self.mode == "nonascii":  # the shape of a signed answer, a digest no HMAC has
            return b"plj0" + json.dumps({"msg": "{}", "salt": request["rsalt"],
                                         "hmac": "\u00e9" * 40}).encode()
        if self.mode == "surrogate":  # JSON text no UTF-8 can encode
            return b"plj0" + json.dumps({"msg": "\ud800", "salt": request["rsalt"],
                                         "hmac": "ab" * 20}).encode()
        status, answer = 0, None
        if request["type"] == 10:
            try:
                answer = _lookup(self.config, request["query"])
            except KeyError:
                status, answer = 1, 2
        elif request["type"] == 0:
            answer = 3000000
        else:
            status, answer = 2, None
        reply = json.dumps({"protocol": 1, "status": status, "answer": answer,
                            "serial": self.serial if status == 0 else 0})
        if self.mode == "nested":  # signed, but nested beyond any parser
            reply = '{"protocol": 1, "status": 0, "serial": 7, "answer": %s%s}' % (
                "[" * 30000, "]" * 30000)
        salt = request["rsalt"] if self.mode != "wrongsalt" else "someone-else"
        key = self.key if self.mode != "badsig" else b"another cluster"
        packet = b"plj0" + json.dumps({"msg": reply, "salt": salt,
                                       "hmac": _sign(key, salt, reply)}).encode()
        return packet[:65000]
