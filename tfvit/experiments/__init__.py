"""Study runs: a run configuration -> measured results -> tables and figures. Recipes wire these."""

from tfvit.experiments.report import markdown_table, plot_runs, plot_study, write_tables
from tfvit.experiments.run import RunConfig, run

__all__ = ["RunConfig", "markdown_table", "plot_runs", "plot_study", "run", "write_tables"]
