-- 0004: each feature row's JSON object, as the API sends it, stored beside its values.
--
-- The API's uncached read formatted 500 rows x 15 floats (float8 -> text) and 500 timestamps on
-- every request: 2.2 ms of server CPU per 500-row page, on the cores the API and its clients
-- share. Formatted once, when the row is written, the read only joins the texts: 1.1 ms of server
-- CPU, most of it sending the 250 KB (bench/bench_api_read.py). The write pays ~4 us per row and
-- ~520 bytes of heap, and this ALTER rewrites the table once. Generated, so the text can never
-- disagree with the row's values, whoever writes them (an UPDATE by hand regenerates it).
--
-- The object's keys are ("ts", *FEATURE_COLUMNS) in order; ts is UTC, second precision, with a Z;
-- NULL, NaN and +-Infinity are null. float8 -> text is the shortest exact representation from
-- PostgreSQL 12 (which generated columns need) when extra_float_digits >= 1, the default: the
-- writing session's setting counts, so this migration and quantscope's feature writes set it.
SET LOCAL extra_float_digits = 1;

-- to_char is STABLE because some patterns read the locale; this pattern reads nothing but its
-- argument, and AT TIME ZONE 'UTC' is immutable, so the function is.
CREATE FUNCTION qs_iso_utc(timestamptz) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT to_char($1 AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') $$;

-- NaN sorts above Infinity in PostgreSQL and a comparison with NULL is NULL: both take the ELSE.
ALTER TABLE quant_features ADD COLUMN row_json text GENERATED ALWAYS AS (
        '{"ts":"' || qs_iso_utc(ts) || '"'
        || ',"rv_20":' || CASE WHEN rv_20 > '-Infinity' AND rv_20 < 'Infinity' THEN rv_20::text ELSE 'null' END
        || ',"rv_60":' || CASE WHEN rv_60 > '-Infinity' AND rv_60 < 'Infinity' THEN rv_60::text ELSE 'null' END
        || ',"atr_14":' || CASE WHEN atr_14 > '-Infinity' AND atr_14 < 'Infinity' THEN atr_14::text ELSE 'null' END
        || ',"parkinson_20":' || CASE WHEN parkinson_20 > '-Infinity' AND parkinson_20 < 'Infinity' THEN parkinson_20::text ELSE 'null' END
        || ',"ret_1":' || CASE WHEN ret_1 > '-Infinity' AND ret_1 < 'Infinity' THEN ret_1::text ELSE 'null' END
        || ',"ret_5":' || CASE WHEN ret_5 > '-Infinity' AND ret_5 < 'Infinity' THEN ret_5::text ELSE 'null' END
        || ',"ret_20":' || CASE WHEN ret_20 > '-Infinity' AND ret_20 < 'Infinity' THEN ret_20::text ELSE 'null' END
        || ',"rsi_14":' || CASE WHEN rsi_14 > '-Infinity' AND rsi_14 < 'Infinity' THEN rsi_14::text ELSE 'null' END
        || ',"macd":' || CASE WHEN macd > '-Infinity' AND macd < 'Infinity' THEN macd::text ELSE 'null' END
        || ',"macd_signal":' || CASE WHEN macd_signal > '-Infinity' AND macd_signal < 'Infinity' THEN macd_signal::text ELSE 'null' END
        || ',"macd_hist":' || CASE WHEN macd_hist > '-Infinity' AND macd_hist < 'Infinity' THEN macd_hist::text ELSE 'null' END
        || ',"dist_high_20":' || CASE WHEN dist_high_20 > '-Infinity' AND dist_high_20 < 'Infinity' THEN dist_high_20::text ELSE 'null' END
        || ',"dist_low_20":' || CASE WHEN dist_low_20 > '-Infinity' AND dist_low_20 < 'Infinity' THEN dist_low_20::text ELSE 'null' END
        || ',"trend_slope_20":' || CASE WHEN trend_slope_20 > '-Infinity' AND trend_slope_20 < 'Infinity' THEN trend_slope_20::text ELSE 'null' END
        || ',"vwap_dev":' || CASE WHEN vwap_dev > '-Infinity' AND vwap_dev < 'Infinity' THEN vwap_dev::text ELSE 'null' END
        || '}'
    ) STORED;
