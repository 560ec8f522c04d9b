"""Response cache for hot symbols: pre-serialised row payloads, LRU, invalidated by PostgreSQL
NOTIFY from the backfill (so a write in another process reaches every API process). The same
listener keeps the RefreshBoard: each series' latest refresh outcome, and whether the database is
reachable, so an answer from the cache can say why its data is old without asking the database."""

from __future__ import annotations

import logging
import select
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone

from quantscope.store import series_refresh
from quantscope.store.series_refresh import Refresh

log = logging.getLogger("quantscope.api.cache")

CHANNEL = "quantscope_features"

Key = tuple[str, str, int]  # symbol, timeframe, limit


@dataclass(frozen=True)
class CacheEntry:
    data_json: bytes            # the serialised rows (a JSON array)
    count: int
    last_computed_at: datetime | None
    stored_at: float


class FeatureCache:
    """LRU bounded by entries and by bytes: a 5,000-row payload is ~1.3 MB, so an entry count
    alone let 512 entries grow the process by ~650 MB under the uncached soak."""

    def __init__(self, max_entries: int = 512, max_bytes: int = 64 * 1024 * 1024):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._bytes = {"entries": 0, "fallback": 0}
        self._entries: OrderedDict[Key, CacheEntry] = OrderedDict()
        # Last known good payload per key, kept through invalidation: served (flagged) when the
        # database is unreachable, never on the normal path.
        self._fallback: OrderedDict[Key, CacheEntry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.invalidations = 0

    def get(self, key: Key) -> CacheEntry | None:
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return e

    def fallback(self, key: Key) -> CacheEntry | None:
        with self._lock:
            return self._entries.get(key) or self._fallback.get(key)

    def put(self, key: Key, entry: CacheEntry) -> None:
        if self.max_entries <= 0:
            return
        size = len(entry.data_json)
        if size > self.max_bytes:
            return
        with self._lock:
            for name, store in (("entries", self._entries), ("fallback", self._fallback)):
                old = store.pop(key, None)
                if old is not None:
                    self._bytes[name] -= len(old.data_json)
                store[key] = entry
                self._bytes[name] += size
                while len(store) > self.max_entries or self._bytes[name] > self.max_bytes:
                    _, evicted = store.popitem(last=False)
                    self._bytes[name] -= len(evicted.data_json)

    def invalidate(self, symbol: str, timeframe: str | None = None) -> int:
        with self._lock:
            doomed = [k for k in self._entries if k[0] == symbol and (timeframe is None or k[1] == timeframe)]
            for k in doomed:
                self._bytes["entries"] -= len(self._entries.pop(k).data_json)
            self.invalidations += len(doomed)
            return len(doomed)

    def clear(self) -> int:
        with self._lock:
            n = len(self._entries)
            self._entries.clear()
            self._bytes["entries"] = 0
            self.invalidations += n
            return n

    def stats(self) -> dict:
        with self._lock:
            return {"entries": len(self._entries), "bytes": self._bytes["entries"], "hits": self.hits,
                    "misses": self.misses, "invalidations": self.invalidations,
                    "max_entries": self.max_entries, "max_bytes": self.max_bytes}


class RefreshBoard:
    """Per series, the latest refresh outcome (series_refresh), and since when the database has
    been unreachable (None: reachable as far as this process knows)."""

    def __init__(self):
        self._series: dict[tuple[str, str], Refresh] = {}
        self._lock = threading.Lock()
        self.db_down_since: datetime | None = None

    def get(self, symbol: str, timeframe: str) -> Refresh | None:
        return self._series.get((symbol, timeframe))

    def replace(self, series: dict[tuple[str, str], Refresh]) -> None:
        with self._lock:
            self._series = dict(series)

    def update(self, key: tuple[str, str], refresh: Refresh | None) -> None:
        with self._lock:
            if refresh is None:
                self._series.pop(key, None)
            else:
                self._series[key] = refresh

    def db_down(self) -> None:
        if self.db_down_since is None:
            self.db_down_since = datetime.now(timezone.utc)

    def db_up(self) -> None:
        self.db_down_since = None


class InvalidationListener(threading.Thread):
    """LISTEN on a dedicated connection; reconnects with backoff. On (re)connect it clears the
    cache, since notifications sent while disconnected are lost."""

    def __init__(self, connect, cache: FeatureCache, poll_s: float = 1.0, board: RefreshBoard | None = None):
        super().__init__(name="cache-invalidation", daemon=True)
        self._connect = connect
        self.cache = cache
        self.board = board if board is not None else RefreshBoard()
        self.poll_s = poll_s
        self._halt = threading.Event()
        self.connected = threading.Event()
        self.received = 0

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        delay = 0.5
        while not self._halt.is_set():
            conn = None
            try:
                conn = self._connect()
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {CHANNEL}")
                    cur.execute(f"LISTEN {series_refresh.CHANNEL}")
                self.cache.clear()
                self.board.replace(series_refresh.read(conn))
                self.board.db_up()
                self.connected.set()
                delay = 0.5
                while not self._halt.is_set():
                    if select.select([conn], [], [], self.poll_s) == ([], [], []):
                        continue
                    conn.poll()
                    while conn.notifies:
                        n = conn.notifies.pop(0)
                        self.received += 1
                        symbol, _, tf = n.payload.partition("|")
                        if n.channel == series_refresh.CHANNEL:
                            self.board.update((symbol, tf), series_refresh.read(conn, symbol, tf).get((symbol, tf)))
                        else:
                            self.cache.invalidate(symbol, tf or None)
            except Exception as e:  # keep listening across DB restarts
                self.connected.clear()
                self.board.db_down()
                log.warning("cache invalidation listener disconnected (%s); retrying in %.1fs",
                            type(e).__name__, delay)
                self._halt.wait(delay)
                delay = min(delay * 2, 10.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
        self.connected.clear()


def now() -> float:
    return time.monotonic()
