"""The response cache's bounds and invalidation, as pure unit tests."""

from quantscope.api.cache import CacheEntry, FeatureCache


def entry(n: int) -> CacheEntry:
    return CacheEntry(data_json=b"x" * n, count=1, last_computed_at=None, stored_at=0.0)


def test_byte_budget_evicts_least_recently_used():
    c = FeatureCache(max_entries=100, max_bytes=1000)
    for i in range(4):
        c.put(("S", "1h", i), entry(300))
    assert c.stats()["entries"] == 3 and c.stats()["bytes"] == 900
    assert c.get(("S", "1h", 0)) is None and c.get(("S", "1h", 3)) is not None


def test_entry_budget_and_oversized_payloads():
    c = FeatureCache(max_entries=2, max_bytes=10_000)
    for i in range(3):
        c.put(("S", "1h", i), entry(10))
    assert c.stats()["entries"] == 2
    c.put(("BIG", "1h", 1), entry(20_000))
    assert c.get(("BIG", "1h", 1)) is None


def test_replacing_a_key_keeps_the_byte_count_exact():
    c = FeatureCache(max_entries=10, max_bytes=10_000)
    c.put(("S", "1h", 1), entry(100))
    c.put(("S", "1h", 1), entry(300))
    assert c.stats()["bytes"] == 300


def test_invalidate_is_per_series_and_fallback_survives():
    c = FeatureCache()
    c.put(("AAPL", "1h", 500), entry(10))
    c.put(("AAPL", "1d", 500), entry(10))
    c.put(("MSFT", "1h", 500), entry(10))
    assert c.invalidate("AAPL", "1h") == 1
    assert c.get(("AAPL", "1h", 500)) is None and c.get(("AAPL", "1d", 500)) is not None
    assert c.fallback(("AAPL", "1h", 500)) is not None  # last good payload for DB outages
    assert c.stats()["bytes"] == 20
