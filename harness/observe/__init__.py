"""Observability of a run: structured logs and the merged log view, metrics (SDK side,
scraping and an aggregated Prometheus endpoint), message tracing analysis, link and TCP
telemetry, the run history and the run report.

The supervisor's hooks: `configure_logging`, `observe_run` (metrics) and
`TelemetrySampler` during a run; `write_report` and `record_run` at its end.
"""

from harness._logging import LEVELS, configure_logging, get_logger
from harness.observe._history import (
    HISTORY_FILE,
    RunRow,
    instance_rows,
    list_runs,
    record_run,
    sync_history,
)
from harness.observe._jsonl import JsonlWriter, read_jsonl
from harness.observe._logmerge import LogFilter, LogLine, follow_lines, format_line, merged_lines
from harness.observe._metrics import Metrics, read_metrics
from harness.observe._report import render_html, summary, write_junit, write_report
from harness.observe._rundir import (
    DEFAULT_OUTPUTS,
    InstanceDir,
    instance_dirs,
    list_run_dirs,
    load_run,
    resolve_run,
)
from harness.observe._scrape import ObserveHandle, Scraper, observe_run, read_scraped, serve_metrics
from harness.observe._shapes import ShapeTimeline
from harness.observe._telemetry import (
    LinkStatsFn,
    TelemetrySampler,
    parse_ss,
    read_telemetry,
    sample_tcp,
)
from harness.observe._trace import (
    Hop,
    LinkDelay,
    MessageDelay,
    TopicStats,
    TraceAnalysis,
    analyse_traces,
)

__all__ = [
    "DEFAULT_OUTPUTS",
    "HISTORY_FILE",
    "LEVELS",
    "Hop",
    "InstanceDir",
    "JsonlWriter",
    "LinkDelay",
    "LinkStatsFn",
    "LogFilter",
    "LogLine",
    "MessageDelay",
    "Metrics",
    "ObserveHandle",
    "RunRow",
    "Scraper",
    "ShapeTimeline",
    "TelemetrySampler",
    "TopicStats",
    "TraceAnalysis",
    "analyse_traces",
    "configure_logging",
    "follow_lines",
    "format_line",
    "get_logger",
    "instance_dirs",
    "instance_rows",
    "list_run_dirs",
    "list_runs",
    "load_run",
    "merged_lines",
    "observe_run",
    "parse_ss",
    "read_jsonl",
    "read_metrics",
    "read_scraped",
    "read_telemetry",
    "record_run",
    "render_html",
    "resolve_run",
    "sample_tcp",
    "serve_metrics",
    "summary",
    "sync_history",
    "write_junit",
    "write_report",
]
