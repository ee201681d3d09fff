"""Study runs: a run configuration -> measured results -> tables and figures. Recipes wire these."""

from tfvit.experiments.report import markdown_table, plot_runs, plot_study, write_tables
from tfvit.experiments.config import RunConfig
from tfvit.experiments.run import run, run_all, trained_model

__all__ = ["RunConfig", "markdown_table", "plot_runs", "plot_study", "run", "run_all", "trained_model", "write_tables"]
