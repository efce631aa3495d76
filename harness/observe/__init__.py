"""Observability of a run: structured logs and the merged log view, metrics (SDK side,
scraping and an aggregated Prometheus endpoint), message tracing analysis, link and TCP
telemetry, the run history and the run report; the run record (run.json) they all read.

The supervisor's hooks: `configure_logging`, `observe_run` (metrics) and
`TelemetrySampler` during a run; `write_report` and `record_run` at its end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness._lazy import lazy_attributes

if TYPE_CHECKING:
    from harness.observe._events import follow_events, format_event, run_events, started_at
    from harness.observe._history import (
        HISTORY_FILE,
        RunRow,
        instance_rows,
        list_runs,
        record_run,
        sync_history,
    )
    from harness.observe._jsonl import JsonlWriter, read_jsonl
    from harness.observe._logging import LEVELS, configure_logging, get_logger
    from harness.observe._logmerge import (
        LogFilter,
        LogLine,
        follow_lines,
        format_line,
        merged_lines,
    )
    from harness.observe._metrics import Metrics, read_metrics
    from harness.observe._report import render_html, summary, write_junit, write_report
    from harness.observe._rundir import (
        DEFAULT_OUTPUTS,
        InstanceDir,
        instance_dirs,
        list_run_dirs,
        resolve_run,
    )
    from harness.observe._runrecord import GroupRecord, InstanceRecord, RunRecord, load_run
    from harness.observe._scrape import (
        ObserveHandle,
        Scraper,
        observe_run,
        serve_metrics,
    )
    from harness.observe._shapes import ShapeTimeline
    from harness.observe._stored import read_scraped, read_telemetry
    from harness.observe._telemetry import (
        LinkStatsFn,
        TelemetrySampler,
        parse_ss,
        sample_tcp,
    )
    from harness.observe._trace import (
        Hop,
        LinkDelay,
        MessageDelay,
        OutlierGroup,
        TopicStats,
        TraceAnalysis,
        analyse_traces,
    )
    from harness.observe._tracefile import TraceWriter, read_trace, read_trace_columns

# Imported on first use: an instance recording metrics (`env.metrics`) must not pay for the
# report, the trace analysis and their dependencies (about 180 ms of CPU per process).
_WHERE = {
    "DEFAULT_OUTPUTS": "harness.observe._rundir",
    "HISTORY_FILE": "harness.observe._history",
    "GroupRecord": "harness.observe._runrecord",
    "Hop": "harness.observe._trace",
    "InstanceDir": "harness.observe._rundir",
    "InstanceRecord": "harness.observe._runrecord",
    "JsonlWriter": "harness.observe._jsonl",
    "LEVELS": "harness.observe._logging",
    "LinkDelay": "harness.observe._trace",
    "LinkStatsFn": "harness.observe._telemetry",
    "LogFilter": "harness.observe._logmerge",
    "LogLine": "harness.observe._logmerge",
    "MessageDelay": "harness.observe._trace",
    "Metrics": "harness.observe._metrics",
    "ObserveHandle": "harness.observe._scrape",
    "OutlierGroup": "harness.observe._trace",
    "RunRecord": "harness.observe._runrecord",
    "RunRow": "harness.observe._history",
    "Scraper": "harness.observe._scrape",
    "ShapeTimeline": "harness.observe._shapes",
    "TelemetrySampler": "harness.observe._telemetry",
    "TopicStats": "harness.observe._trace",
    "TraceAnalysis": "harness.observe._trace",
    "TraceWriter": "harness.observe._tracefile",
    "analyse_traces": "harness.observe._trace",
    "configure_logging": "harness.observe._logging",
    "follow_events": "harness.observe._events",
    "follow_lines": "harness.observe._logmerge",
    "format_event": "harness.observe._events",
    "format_line": "harness.observe._logmerge",
    "get_logger": "harness.observe._logging",
    "instance_dirs": "harness.observe._rundir",
    "instance_rows": "harness.observe._history",
    "list_run_dirs": "harness.observe._rundir",
    "list_runs": "harness.observe._history",
    "load_run": "harness.observe._runrecord",
    "merged_lines": "harness.observe._logmerge",
    "observe_run": "harness.observe._scrape",
    "parse_ss": "harness.observe._telemetry",
    "read_jsonl": "harness.observe._jsonl",
    "read_metrics": "harness.observe._metrics",
    "read_scraped": "harness.observe._stored",
    "read_telemetry": "harness.observe._stored",
    "read_trace": "harness.observe._tracefile",
    "read_trace_columns": "harness.observe._tracefile",
    "record_run": "harness.observe._history",
    "render_html": "harness.observe._report",
    "resolve_run": "harness.observe._rundir",
    "run_events": "harness.observe._events",
    "sample_tcp": "harness.observe._telemetry",
    "serve_metrics": "harness.observe._scrape",
    "started_at": "harness.observe._events",
    "summary": "harness.observe._report",
    "sync_history": "harness.observe._history",
    "write_junit": "harness.observe._report",
    "write_report": "harness.observe._report",
}

__all__ = [
    "DEFAULT_OUTPUTS",
    "HISTORY_FILE",
    "LEVELS",
    "GroupRecord",
    "Hop",
    "InstanceDir",
    "InstanceRecord",
    "JsonlWriter",
    "LinkDelay",
    "LinkStatsFn",
    "LogFilter",
    "LogLine",
    "MessageDelay",
    "Metrics",
    "ObserveHandle",
    "OutlierGroup",
    "RunRecord",
    "RunRow",
    "Scraper",
    "ShapeTimeline",
    "TelemetrySampler",
    "TopicStats",
    "TraceAnalysis",
    "TraceWriter",
    "analyse_traces",
    "configure_logging",
    "follow_events",
    "follow_lines",
    "format_event",
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
    "read_trace",
    "read_trace_columns",
    "record_run",
    "render_html",
    "resolve_run",
    "run_events",
    "sample_tcp",
    "serve_metrics",
    "started_at",
    "summary",
    "sync_history",
    "write_junit",
    "write_report",
]


__getattr__ = lazy_attributes(__name__, _WHERE, globals())
