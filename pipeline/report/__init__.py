"""Reports: evaluation (quality, retention, size, speed), the report and plots, the pick, and the
tables the docs show."""
