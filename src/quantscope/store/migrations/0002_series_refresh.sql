-- The latest refresh outcome per series, kept by the backfill, read by the API to say why cached
-- data is old (a rate-limited or failed refresh) rather than only that it is.
CREATE TABLE series_refresh (
    symbol           text        NOT NULL,
    timeframe        text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('success', 'rate_limited', 'failed')),
    phase            text,                 -- failed: api | db | compute | unknown
    message          text,
    at               timestamptz NOT NULL,
    last_success_at  timestamptz,
    PRIMARY KEY (symbol, timeframe)
);
