-- 0003: freshness per series in its own small table.
--
-- Before, freshness was max(features_computed_at) over a series' rows, so every re-run had to
-- rewrite every feature row (and its index entry) just to move that timestamp. Now a re-run
-- rewrites only the rows whose values changed (IS DISTINCT FROM), and stamps the series here once
-- per write. A row's features_computed_at now says when its values were last computed; the
-- (symbol, timeframe, features_computed_at) index the seed asks for stays and still answers "rows
-- computed since t" per series. The triggers keep this table exact whatever deletes rows: a
-- series with no rows left has no freshness.
CREATE TABLE series_freshness (
    symbol                text        NOT NULL,
    timeframe             text        NOT NULL,
    features_computed_at  timestamptz NOT NULL,
    PRIMARY KEY (symbol, timeframe)
);

INSERT INTO series_freshness (symbol, timeframe, features_computed_at)
SELECT symbol, timeframe, max(features_computed_at) FROM quant_features GROUP BY symbol, timeframe;

CREATE FUNCTION qs_series_freshness_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE series_freshness;
    RETURN NULL;
END $$;

CREATE TRIGGER quant_features_truncate_freshness AFTER TRUNCATE ON quant_features
    FOR EACH STATEMENT EXECUTE FUNCTION qs_series_freshness_truncate();

CREATE FUNCTION qs_series_freshness_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM series_freshness f
    USING (SELECT DISTINCT symbol, timeframe FROM gone) g
    WHERE f.symbol = g.symbol AND f.timeframe = g.timeframe
      AND NOT EXISTS (SELECT 1 FROM quant_features q WHERE q.symbol = g.symbol AND q.timeframe = g.timeframe);
    RETURN NULL;
END $$;

CREATE TRIGGER quant_features_delete_freshness AFTER DELETE ON quant_features
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION qs_series_freshness_delete();
