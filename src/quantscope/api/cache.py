"""Response cache for hot symbols: pre-serialised row payloads, LRU, invalidated by PostgreSQL
NOTIFY from the backfill (so a write in another process reaches every API process)."""

from __future__ import annotations

import logging
import select
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

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
    def __init__(self, max_entries: int = 512):
        self.max_entries = max_entries
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
        with self._lock:
            for store in (self._entries, self._fallback):
                store[key] = entry
                store.move_to_end(key)
                while len(store) > self.max_entries:
                    store.popitem(last=False)

    def invalidate(self, symbol: str, timeframe: str | None = None) -> int:
        with self._lock:
            doomed = [k for k in self._entries if k[0] == symbol and (timeframe is None or k[1] == timeframe)]
            for k in doomed:
                del self._entries[k]
            self.invalidations += len(doomed)
            return len(doomed)

    def clear(self) -> int:
        with self._lock:
            n = len(self._entries)
            self._entries.clear()
            self.invalidations += n
            return n

    def stats(self) -> dict:
        with self._lock:
            return {"entries": len(self._entries), "hits": self.hits, "misses": self.misses,
                    "invalidations": self.invalidations, "max_entries": self.max_entries}


class InvalidationListener(threading.Thread):
    """LISTEN on a dedicated connection; reconnects with backoff. On (re)connect it clears the
    cache, since notifications sent while disconnected are lost."""

    def __init__(self, connect, cache: FeatureCache, poll_s: float = 1.0):
        super().__init__(name="cache-invalidation", daemon=True)
        self._connect = connect
        self.cache = cache
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
                self.cache.clear()
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
                        self.cache.invalidate(symbol, tf or None)
            except Exception as e:  # keep listening across DB restarts
                self.connected.clear()
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
