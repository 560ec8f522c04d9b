-- 0001: initial schema. Applied once, in its own transaction, by quantscope.store.migrations.
-- Never edit an applied migration: add 0002_*.sql instead.

CREATE TABLE bars (
    symbol      text             NOT NULL,
    timeframe   text             NOT NULL,
    ts          timestamptz      NOT NULL,
    open        double precision,
    high        double precision,
    low         double precision,
    close       double precision,
    volume      double precision,
    vwap        double precision,
    trades      bigint,
    PRIMARY KEY (symbol, timeframe, ts)
);

-- One column per quantscope.features.compute.FEATURE_COLUMNS name (tests check they match).
CREATE TABLE quant_features (
    symbol                text             NOT NULL,
    timeframe             text             NOT NULL,
    ts                    timestamptz      NOT NULL,
    rv_20                 double precision,
    rv_60                 double precision,
    atr_14                double precision,
    parkinson_20          double precision,
    ret_1                 double precision,
    ret_5                 double precision,
    ret_20                double precision,
    rsi_14                double precision,
    macd                  double precision,
    macd_signal           double precision,
    macd_hist             double precision,
    dist_high_20          double precision,
    dist_low_20           double precision,
    trend_slope_20        double precision,
    vwap_dev              double precision,
    features_computed_at  timestamptz      NOT NULL,
    PRIMARY KEY (symbol, timeframe, ts)
);
-- Freshness: max(features_computed_at) per (symbol, timeframe) is an index lookup.
CREATE INDEX quant_features_computed_idx ON quant_features (symbol, timeframe, features_computed_at);

CREATE TABLE backfill_runs (
    run_id       text PRIMARY KEY,
    started_at   timestamptz,
    finished_at  timestamptz,
    status       text,
    trigger      text,
    strategy     text,
    concurrency  int,
    params       jsonb,
    note         text
);

CREATE TABLE scheduler_execution_log (
    id                bigserial PRIMARY KEY,
    run_id            text REFERENCES backfill_runs (run_id),
    symbol            text,
    timeframe         text,
    tier              text,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'success', 'failed', 'skipped')),
    attempt           int NOT NULL DEFAULT 0,
    records_fetched   int,
    records_inserted  int,
    api_seconds       double precision,
    db_seconds        double precision,
    compute_seconds   double precision,
    total_seconds     double precision,
    error             text,
    lease_owner       text,
    lease_expires_at  timestamptz,
    priority          int NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    UNIQUE (run_id, symbol, timeframe)
);
CREATE INDEX scheduler_execution_log_run_status_idx ON scheduler_execution_log (run_id, status);
CREATE INDEX scheduler_execution_log_lease_idx ON scheduler_execution_log (status, lease_expires_at);
