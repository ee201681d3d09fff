"""Study runs: a run configuration -> measured results -> tables and figures. Recipes wire these."""

from tfvit.experiments.report import markdown_table, plot_runs, write_tables
from tfvit.experiments.run import RunConfig, run

__all__ = ["RunConfig", "markdown_table", "plot_runs", "run", "write_tables"]
