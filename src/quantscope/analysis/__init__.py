"""Telemetry analysis. Reads traces and k6 output only and never imports the service (nor typer
or rich: its commands are quantscope.cli.analyze).

traces           readers (OTLP / Jaeger / Zipkin JSON files and folders, Tempo, Jaeger v3) -> SpanTable
foreign_formats  Jaeger v1/UI and Zipkin v2 JSON -> OTLP documents
phases           which spans are jobs, and their phase (quantscope.phase, rules file, semantic conventions)
attribution      per-job phase time (api/db/compute/untraced) and wall-clock shares
backfill         analyze_backfill(spans, ...) -> phase_2_backfill_baseline.json report
tail             distributions and the slowest 5% against the rest (jobs and requests)
load             k6 points + server spans -> load_test_report.json (merge of N k6 instances)
compare          compare_reports(before, after) -> deltas, speed-up, significance
report/          report.html from the reports (only keys their schemas define)
spanset          hand-built span sets with known answers
"""
