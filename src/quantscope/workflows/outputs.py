"""What the workflows write, their defaults and how `validate` exits: names only, so the CLI can
show them without loading a workflow."""

PARTS = ("backfill", "load", "rto-rpo")
OUTPUTS = {"baseline": "phase_2_backfill_baseline.json", "load": "load_test_report.json",
           "rto_rpo": "rto_rpo_definition.json", "comparison": "comparison.json", "run": "validate_run.json",
           "html": "report.html"}
EXIT_OK, EXIT_PART_FAILED, EXIT_USAGE, EXIT_TARGET_MISSED = 0, 1, 2, 3
EXIT_HELP = ("Exit codes: 0 every part ran and met its targets; 1 a part could not run; 2 bad usage; "
             "3 every part ran but a seed target or an RTO was missed.")
BASELINE_PROFILE = "polygon-like"  # the simulator profile a baseline uses when no Polygon is configured
