"""A client for ganeti-confd: signed UDP questions about the configuration.

Protocol (Ganeti 2.x/3.x, lib/confd/client.py and src/Ganeti/Confd/*.hs):
a request is `plj0` followed by the JSON `{"msg": M, "salt": T, "hmac": H}`
where M is the JSON request `{"protocol": 1, "type": N, "query": Q,
"rsalt": R}`, T the current Unix time as a decimal string (confd drops
requests more than 5 minutes off its clock) and H the hex HMAC-SHA1 of
T + M under the cluster's key (`<data_dir>/hmac.key`, all of it).  The
answer is `plj0` + `{"msg": A, "salt": R, "hmac": HMAC(R + A)}` with A =
`{"protocol": 1, "status": 0|1|2, "answer": ..., "serial": S}`: signed
with the same key and carrying our random R, so a stranger can neither
forge nor replay one.  confd answers nothing to what it cannot verify.

Requests go to every peer (the master candidates) at once; each answer
is verified and the complete set of answers of the peer with the newest
configuration (highest serial) wins, as Ganeti's client prefers the
highest serial.  Everything is bounded: the whole exchange by `timeout`,
each datagram by MAX_DATAGRAM.  Any failure is a ConfdError saying what.
"""

import hmac
import json
import os
import socket
import time

MAGIC = b"plj0"
PROTOCOL = 1
DEFAULT_PORT = 1814
MAX_DATAGRAM = 65535  # what UDP can carry; confd sends at most one per answer

# Request types (constants.CONFD_REQ_*).
REQ_PING = 0
REQ_NODE_ROLE_BYNAME = 1
REQ_CLUSTER_MASTER = 3
REQ_CONFIG_QUERY = 10  # an RFC 6901 JSON pointer into the configuration

STATUS_OK = 0
STATUS_ERROR = 1
STATUS_NOTIMPLEMENTED = 2
# The answer that comes with STATUS_ERROR (constants.CONFD_ERROR_*).
ERRORS = {0: "unknown entry", 1: "internal error", 2: "argument error"}


class ConfdError(Exception):
    """confd could not be asked, did not answer, or answered garbage."""


def pointer(*parts):
    """An RFC 6901 JSON pointer from its parts ('~' and '/' escaped)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1")
                   for p in parts)


def sign(key, salt, message):
    """Ganeti's signature: hex HMAC-SHA1 of salt + message."""
    return hmac.new(key, salt.encode("utf-8") + message.encode("utf-8"),
                    "sha1").hexdigest()


def pack_request(key, req_type, query, rsalt, now):
    """The datagram of one request."""
    message = json.dumps({"protocol": PROTOCOL, "type": req_type,
                          "query": query, "rsalt": rsalt})
    salt = "%d" % now
    return MAGIC + json.dumps({"msg": message, "salt": salt,
                               "hmac": sign(key, salt, message)}).encode("utf-8")


def unpack_reply(key, datagram):
    """(rsalt, reply dict) of a verified answer; ConfdError if it is not one."""
    if not datagram.startswith(MAGIC):
        raise ConfdError("not a confd answer (no magic)")
    try:
        outer = json.loads(datagram[len(MAGIC):].decode("utf-8"))
        message, salt, digest = outer["msg"], outer["salt"], outer["hmac"]
    except (ValueError, TypeError, KeyError, RecursionError):
        raise ConfdError("not a signed confd answer")
    if not (isinstance(message, str) and isinstance(salt, str)
            and isinstance(digest, str)):
        raise ConfdError("not a signed confd answer")
    try:  # JSON may carry lone surrogates, which no UTF-8 (and no HMAC) has
        message.encode("utf-8"), salt.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfdError("not a signed confd answer")
    # compare_digest raises TypeError on non-ASCII text: such a digest is
    # simply not ours.
    if not (digest.isascii()
            and hmac.compare_digest(sign(key, salt, message), digest.lower())):
        raise ConfdError("bad signature (another cluster's key?)")
    try:
        reply = json.loads(message)
    except (ValueError, RecursionError):
        raise ConfdError("signed answer is not JSON")
    if not (isinstance(reply, dict) and reply.get("protocol") == PROTOCOL
            and reply.get("status") in (STATUS_OK, STATUS_ERROR,
                                        STATUS_NOTIMPLEMENTED)
            and type(reply.get("serial")) is int and "answer" in reply):
        raise ConfdError("signed answer is not a confd reply")
    return salt, reply


class Answer:
    """One verified answer: status, answer, serial, and who sent it."""

    __slots__ = ("status", "answer", "serial", "peer")

    def __init__(self, status, answer, serial, peer):
        self.status = status
        self.answer = answer
        self.serial = serial
        self.peer = peer

    @property
    def ok(self):
        return self.status == STATUS_OK

    def error(self):
        """What a failed answer says."""
        if self.status == STATUS_NOTIMPLEMENTED:
            return "not implemented by this confd"
        if isinstance(self.answer, int) and self.answer in ERRORS:
            return ERRORS[self.answer]
        return "error %s" % str(self.answer)[:200]


def ask(key, peers, requests, port=DEFAULT_PORT, timeout=2.0, clock=time.time):
    """Ask every peer every request at once: {request: Answer}.

    `requests` are (type, query) pairs; `peers` IP addresses.  The answers
    of one peer are used, all of them from the same configuration (one
    serial): the peer with the highest serial that answered everything.
    ConfdError when no peer did within `timeout` seconds, saying why.
    """
    if not peers:
        raise ConfdError("no confd peers (no master candidate addresses)")
    if not key:
        raise ConfdError("the HMAC key is empty")
    requests = list(dict.fromkeys(requests))
    salts = {os.urandom(16).hex(): r for r in requests}  # confd echoes it
    sockets, problems = {}, []
    try:
        for peer in dict.fromkeys(peers):
            # One connected socket per peer: the kernel then reports "port
            # unreachable" (no confd there) at once instead of a timeout.
            s = None
            family = _family(peer)
            if family is None:  # a name would be resolved: maybe a long hang
                problems.append("%s: not an IP address" % peer)
                continue
            try:
                s = socket.socket(family, socket.SOCK_DGRAM)
                s.setblocking(False)
                s.connect((peer, port))
                for rsalt, (req_type, query) in salts.items():
                    s.send(pack_request(key, req_type, query, rsalt, clock()))
            except OSError as e:
                problems.append("%s: %s" % (peer, e.strerror or e))
                if s is not None:
                    s.close()
                continue
            sockets[s] = peer
        got = _receive(key, sockets, salts, timeout, problems)
    finally:
        for s in sockets:
            s.close()
    complete = []
    for peer, answers in got.items():
        serials = {a.serial for a in answers.values() if a.ok}
        if len(answers) == len(salts) and len(serials) <= 1:
            complete.append((max(serials, default=0), peer))
    if complete:
        _, peer = max(complete)
        return {salts[rsalt]: answer for rsalt, answer in got[peer].items()}
    why = ["no complete answer from confd at %s (port %d) within %s s" % (
        ", ".join(dict.fromkeys(peers)), port, "%g" % timeout)]
    if got:
        why.append("answers were incomplete or from a configuration that "
                   "changed meanwhile")
    why += list(dict.fromkeys(problems))[:4]
    if len(why) == 1:
        why.append("is ganeti-confd running there, with this node's "
                   "hmac.key, and its clock within 5 min of ours?")
    raise ConfdError("; ".join(why))


def _family(address):
    """AF_INET or AF_INET6 for a numeric address; None for anything else."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, address)
        except (OSError, ValueError):
            continue
        return family
    return None


def _note(problems, text):
    """Add a problem once: a flood of bad datagrams adds one line, not one
    per datagram."""
    if text not in problems:
        problems.append(text)


def _receive(key, sockets, salts, timeout, problems):
    """{peer: {rsalt: Answer}} until every peer answered everything, failed,
    or `timeout` passed; what went wrong is added to `problems`."""
    import select
    deadline = time.monotonic() + timeout
    got = {}
    waiting = dict(sockets)
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        readable, _, _ = select.select(list(waiting), [], [], left)
        for s in readable:
            peer = waiting[s]
            try:
                datagram = s.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:  # ECONNREFUSED: no confd listens there
                _note(problems, "%s: %s" % (peer, e.strerror or e))
                del waiting[s]
                continue
            try:
                rsalt, reply = unpack_reply(key, datagram)
            except ConfdError as e:
                _note(problems, "answer from %s ignored: %s" % (peer, e))
                continue
            if rsalt not in salts:
                _note(problems, "answer from %s to a question we did not ask "
                      "ignored" % peer)
                continue
            answers = got.setdefault(peer, {})
            answers[rsalt] = Answer(reply["status"], reply["answer"],
                                    reply["serial"], peer)
            if len(answers) == len(salts):
                del waiting[s]
    return got


def config_values(key, peers, paths, port=DEFAULT_PORT, timeout=2.0):
    """({path: value or None (no such entry)}, serial) of JSON pointers
    into the configuration, one consistent answer (CONFD_REQ_CONFIG_QUERY,
    Ganeti 2.13 and later); ConfdError otherwise."""
    answers = ask(key, peers, [(REQ_CONFIG_QUERY, p) for p in paths], port,
                  timeout)
    values, serial = {}, None
    for (_, path), answer in answers.items():
        serial = answer.serial if answer.ok else serial
        if answer.ok:
            values[path] = answer.answer
        elif answer.status == STATUS_ERROR and type(answer.answer) is int \
                and answer.answer in (0, 2):
            values[path] = None  # the pointer names nothing
        else:
            raise ConfdError("confd at %s cannot answer %s: %s"
                             % (answer.peer, path, answer.error()))
    return values, serial

