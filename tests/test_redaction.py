"""Telemetry redaction: URL credentials, registered secrets, inlined SQL rows (str and bytes)."""

from quantscope.util import redaction as r


def test_url_credentials_and_key_params_are_redacted():
    out = r.redact_url("https://user:pw@api.polygon.io/v2/aggs?apiKey=abc123456&limit=5&token=t0k3n999")
    assert "abc123456" not in out and "t0k3n999" not in out and "pw@" not in out
    assert "limit=5" in out and r.REDACTED in out


def test_registered_secret_is_scrubbed_anywhere():
    r.register_secret("sentinel-secret-77")
    assert r.redact_value("http.url", "http://x/?q=sentinel-secret-77") .count("sentinel") == 0
    assert r.redact_value("exception.message", "boom sentinel-secret-77 boom") == f"boom {r.REDACTED} boom"


def test_execute_values_rows_are_elided_from_str_and_bytes_statements():
    sql = "INSERT INTO bars (a, b) VALUES (1.2345678, 2.5),(3.14159, 4.0) ON CONFLICT (a) DO NOTHING"
    for value in (sql, sql.encode()):
        out = r.redact_value("db.statement", value)
        assert isinstance(out, str)
        assert "3.14159" not in out and "1.2345678" not in out
        assert out.startswith("INSERT INTO bars (a, b) VALUES (") and "ON CONFLICT" in out


def test_long_sql_is_truncated():
    out = r.redact_sql("SELECT " + "x, " * 2000 + "y")
    assert len(out) < r.MAX_SQL + 64 and "chars elided" in out


def test_attributes_unchanged_return_none():
    assert r.redact_attributes({"quantscope.symbol": "AAPL", "n": 3}) is None


def test_free_text_scrubs_quoted_urls_but_leaves_plain_words():
    msg = "HTTP 429 for https://bob:hunter2@api.test/v2/aggs?ticker=AAPL&apiKey=abc123&x=1 (retry)"
    out = r.redact_free_text(msg)
    assert "abc123" not in out and "hunter2" not in out
    assert out == "HTTP 429 for https://[REDACTED]@api.test/v2/aggs?ticker=AAPL&apiKey=[REDACTED]&x=1 (retry)"
    assert r.redact_free_text("a=b and token is fine") == "a=b and token is fine"
    assert r.redact_free_text("GET /v2?token=t0k3n") == "GET /v2?token=[REDACTED]"


def test_sql_redaction_finds_values_exactly_where_the_plain_regex_does():
    """The lowercase pre-check is a shortcut, never a different answer: the first match of the
    case-blind regex, on ASCII and non-ASCII statements alike."""
    import random
    import re

    def reference(sql: str) -> str:  # redact_sql before the shortcut
        m = r._VALUES_RE.search(sql)
        if m:
            tail = sql[m.end():]
            conflict = re.search(r"\)\s*(ON\s+CONFLICT.*)$", tail, re.IGNORECASE | re.DOTALL)
            sql = sql[:m.end()] + "...)" + (" " + conflict.group(1) if conflict else "")
        if len(sql) > r.MAX_SQL:
            sql = sql[:r.MAX_SQL] + f"...[{len(sql) - r.MAX_SQL} chars elided]"
        return sql

    rng = random.Random(7)
    words = ["values", "VALUES", "VaLuEs", "xvalues", "values_x", "_values", "(", ")", " ", "\n", "1,2",
             "ON CONFLICT (a) DO NOTHING", "İ", "é", "SELECT", "INSERT INTO t", "valu", "es"]
    for _ in range(3000):
        sql = "".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
        assert r.redact_sql(sql) == reference(sql), sql
