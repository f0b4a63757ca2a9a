# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# A small RESP2 client: the few Redis commands the modules send, pipelined.  The modules use it
# instead of redis-py because importing redis-py costs more than a whole module run otherwise
# (it imports asyncio), and because the hosts that run the modules then need no extra library.
# Workers, tests and benchmarks use redis-py.

from __future__ import annotations

import socket
import ssl


class RedisError(Exception):
    """Any failure talking to Redis."""


class ConnectionFailed(RedisError):
    """Redis could not be reached, or the connection broke."""


class TLSFailed(ConnectionFailed):
    """The TLS handshake failed (an untrusted or wrong certificate, no TLS on the other side ...)."""


class ReplyError(RedisError):
    """Redis answered with an error reply (-ERR, -NOAUTH, -WRONGPASS, -BUSYGROUP ...)."""

    @property
    def code(self):
        return str(self).split(" ", 1)[0]


def _encode(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, (int, float)):
        return repr(value).encode("ascii")
    raise TypeError("cannot send %r to Redis" % type(value).__name__)


def pack(command):
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = _encode(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Client:
    """One connection; replies come back decoded as str (bulk strings are UTF-8 here)."""

    def __init__(self, host, port=6379, db=0, username=None, password=None, ssl_context=None, timeout=10.0):
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            if ssl_context is not None:
                try:
                    sock = ssl_context.wrap_socket(sock, server_hostname=host)
                except (OSError, ssl.SSLError) as exc:
                    sock.close()
                    raise TLSFailed("TLS handshake with %s:%s failed: %s" % (host, port, exc)) from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionFailed("Error connecting to %s:%s: %s" % (host, port, exc)) from None
        self._sock = sock
        self._file = sock.makefile("rb")
        # Authenticate, select and check the connection in one round trip; PING answers NOAUTH
        # when the server wants a password that the URL did not give.
        setup = []
        if password is not None:
            setup.append(("AUTH", username, password) if username else ("AUTH", password))
        if db:
            setup.append(("SELECT", db))
        setup.append(("PING",))
        for reply in self.pipeline(setup):
            if isinstance(reply, ReplyError):
                raise reply

    def close(self):
        try:
            self._file.close()
            self._sock.close()
        except OSError:
            pass

    def _read(self):
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionFailed("connection to Redis closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode("utf-8")
        if kind == b"-":
            return ReplyError(rest.decode("utf-8"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self._file.read(size + 2)
            if len(data) != size + 2:
                raise ConnectionFailed("connection to Redis closed")
            # Not UTF-8 (written by something else): U+FFFD in its place, which no name or URL
            # rule accepts, instead of a reader that crashes.
            return data[:-2].decode("utf-8", "replace")
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _index in range(size)]
        raise RedisError("unexpected reply from Redis: %r" % line[:40])

    def pipeline(self, commands):
        """Send every command, then read every reply: one round trip.  Error replies are returned, not raised."""
        if not commands:
            return []
        try:
            self._sock.sendall(b"".join(pack(command) for command in commands))
            return [self._read() for _command in commands]
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionFailed("Redis connection failed: %s" % exc) from None

    def execute(self, *command):
        """One command; an error reply is raised."""
        (reply,) = self.pipeline([command])
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def transaction(self, commands):
        """MULTI, `commands`, EXEC in one round trip: their replies, or None when a WATCHed key changed.

        An error reply inside EXEC is returned in its place, as Redis runs the other commands.
        """
        replies = self.pipeline([("MULTI",)] + list(commands) + [("EXEC",)])
        for reply in replies[1:-1]:
            if isinstance(reply, ReplyError):  # rejected while queueing: Redis discarded the transaction
                raise reply
        if isinstance(replies[-1], ReplyError):
            raise replies[-1]
        return replies[-1]


def pairs(flat):
    """HGETALL's flat [field, value, ...] reply as a dict."""
    return dict(zip(flat[::2], flat[1::2]))
