"""Telemetry analysis. Reads traces only and never imports the service.

traces       readers (OTLP JSON files/folders, Tempo, Jaeger v3) -> SpanTable
attribution  per-job phase time (api/db/compute/untraced) and wall-clock shares
backfill     analyze_backfill(spans, metadata) -> phase_2_backfill_baseline.json report
compare      compare_reports(before, after) -> deltas, speed-up, significance
cli          analyze_app (`quantscope analyze backfill`), compare_command (`quantscope compare`)
spanset      hand-built span sets with known answers
"""
