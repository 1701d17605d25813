"""A TCP proxy between tagflow and a test's PostgreSQL that cuts connections on demand: what a
source lost mid-read looks like from tagflow, a connection closed or one that stops answering."""

from __future__ import annotations

import socket
import threading

from psycopg import conninfo

from tagflow.source.connection import libpq_url


class CuttingProxy:
    """Forwards TCP connections on 127.0.0.1 to a PostgreSQL server (a Unix socket path or a
    (host, port)). While armed, each connection is cut once it has carried `cut_after` bytes
    from the server since the arming (or since it was opened, if later): 'close' closes both
    sockets, 'blackhole' keeps both open and forwards nothing more (what the server sends is
    drained and dropped). `connections` counts the connections accepted: tagflow's sessions."""

    def __init__(self, upstream: str | tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: tuple[str, int] | None = None
        self._arming = 0  # which arming _armed is, so a pump counts bytes from it on
        self._sockets: list[socket.socket] = []
        self.cuts = 0
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, mode: str, cut_after: int) -> None:
        with self._lock:
            self._armed = (mode, cut_after)
            self._arming += 1

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _dial(self) -> socket.socket:
        if isinstance(self._upstream, str):
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self._upstream)
            return server
        return socket.create_connection(self._upstream)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = self._dial()
            with self._lock:
                self._sockets += [client, server]
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        carried, arming = 0, None
        try:
            while data := source.recv(65536):
                with self._lock:
                    armed = self._armed if from_server else None
                    if armed is not None and arming != self._arming:
                        arming, carried = self._arming, 0
                if armed is not None and carried + len(data) > armed[1]:
                    sink.sendall(data[: armed[1] - carried])
                    with self._lock:
                        self.cuts += 1
                    if armed[0] == "blackhole":
                        while source.recv(65536):
                            pass
                    break
                sink.sendall(data)
                carried += len(data)
        except OSError:
            pass  # the other side went away: end this connection too
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def upstream_of(pg_url: str) -> str | tuple[str, int]:
    params = conninfo.conninfo_to_dict(libpq_url(pg_url))
    host, port = str(params.get("host") or "/tmp"), int(params.get("port") or 5432)
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)


def proxied_url(pg_url: str, proxy: CuttingProxy) -> str:
    """`pg_url` through `proxy`."""
    return conninfo.make_conninfo(libpq_url(pg_url), host="127.0.0.1", port=proxy.port)
