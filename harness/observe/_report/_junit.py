"""junit.xml: one testcase per instance, a failure element with the reason, for CI."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from harness._rundir import write_files
from harness.observe._report._data import RunData
from harness.observe._report._summary import failed


def junit_tree(r: RunData) -> ET.ElementTree:
    """The JUnit XML document of a loaded run."""
    run = r.run
    # a live run's report (`harness report` while it runs): who has no outcome yet is skipped
    failures = [i for i in r.instances if failed(i, run)]
    pending = {i.id for i in r.instances if not i.passed} - {i.id for i in failures}
    name = _xml(f"{run.plan or '?'}:{run.case or '?'}")
    # A run that failed for itself (a fault never played, an error of the supervisor) or
    # was interrupted with every instance passed: a testcase of its own, or CI would read
    # the run as green.
    whole = run.outcome in ("failed", "error", "aborted", "interrupted") and not failures
    error = whole and run.outcome != "failed"
    suite = ET.Element(
        "testsuite",
        name=name,
        tests=str(len(r.instances) + whole),
        failures=str(len(failures) + (whole and not error)),
        errors=str(int(error)),
        skipped=str(len(pending)),
        timestamp=datetime.fromtimestamp(run.started or 0, UTC).isoformat(timespec="seconds"),
        time=f"{run.duration_s or 0:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    for k, v in (("run_id", run.run_id), ("runner", run.runner), ("outcome", run.outcome)):
        ET.SubElement(props, "property", name=k, value=str(v))
    run_dir = r.dir.resolve()  # once: resolving each instance's file looks up every part
    for inst in r.instances:
        case = ET.SubElement(
            suite, "testcase", classname=name, name=inst.id, time=f"{inst.duration_s or 0:.3f}"
        )
        if inst.id in pending:
            ET.SubElement(case, "skipped", message="no outcome yet: the run goes on")
        elif not inst.passed:
            reason = _xml(inst.reason or inst.outcome or "no outcome recorded")
            fail = ET.SubElement(case, "failure", message=reason, type=str(inst.outcome))
            code = "" if inst.exit_code is None else f" (exit code {inst.exit_code})"
            fail.text = f"{inst.id}: {reason}{code}"
        if (out := r.link(inst.id, "stdout.log")) is not None:
            ET.SubElement(case, "system-out").text = _xml(f"[[ATTACHMENT|{run_dir / out}]]")
    if whole:
        case = ET.SubElement(suite, "testcase", classname=name, name="run",
                             time=f"{run.duration_s or 0:.3f}")
        reason = _xml(run.reason or f"the run {run.outcome}")
        ET.SubElement(case, "error" if error else "failure", message=reason,
                      type=str(run.outcome)).text = f"run {run.run_id}: {reason}"
    root = ET.Element("testsuites")
    root.append(suite)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    return tree


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """`text` with what XML 1.0 cannot hold (control characters, NUL: an instance's words
    may carry terminal escapes) written as Python escapes, \\x1b: the file stays XML."""
    return _NOT_XML.sub(lambda m: repr(m.group())[1:-1], text)


def junit_bytes(r: RunData) -> bytes:
    """junit.xml's content for a loaded run."""
    out = io.BytesIO()
    junit_tree(r).write(out, encoding="utf-8", xml_declaration=True)
    return out.getvalue()


def write_junit_file(r: RunData) -> Path:
    """Write junit.xml into the run directory (whole or not at all); returns its path."""
    path = r.dir / "junit.xml"
    write_files({path: junit_bytes(r)})
    return path
