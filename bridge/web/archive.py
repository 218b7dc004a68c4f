"""Bringing an X archive over from the organisation's page: a streamed upload, a dry run, a background import.

The upload is parsed as it arrives (python-multipart's streaming parser) and
written straight to a file under the ledger's folder; it stops at
``web.max_upload_bytes`` and the partial file is removed. The CSRF field comes
before the file in the form, so a forged post is refused before any byte of
the file is written.

The import runs in a worker thread of the web process, not in the daemon:
the web process holds the uploaded file, the backfill library is resumable
(its posts are in the ledger before any is delivered, and a post is delivered
once whoever delivers it), and the daemon's scheduling stays as it is. The
job's progress (done, total, ETA) is written to the ledger after each post, so
the page shows it after a reload, and a job left "running" by a stopped web
process is resumed when it starts again.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

from bridge.config import Config
from bridge.errors import BridgeError
from bridge.ledger import Ledger
from bridge.logs import get_logger
from bridge.web.flows import PageError, now

KIND = "archive"
MAX_FIELD_BYTES = 4096
log = get_logger("bridge.web.archive")


def upload_dir(config: Config) -> Path:
    path = config.database.parent / "uploads"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


class TooLarge(Exception):
    pass


async def receive(chunks: AsyncIterator[bytes], content_type: str, dest: Path, cap: int,
                  csrf_ok: Callable[[str], bool]) -> Path:
    """Stream a multipart form with one file to ``dest`` (a new file); PageError for a forged, empty or too big one."""
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise PageError("problem", "upload_bad")
    fields: dict[str, str] = {}
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "name": "", "file": None, "buf": b"", "size": 0}
    fd, tmp = tempfile.mkstemp(prefix="archive-", suffix=".zip", dir=dest)
    path = Path(tmp)
    out = os.fdopen(fd, "wb")

    def on_part_begin() -> None:
        state.update(headers={}, field=b"", value=b"", name="", file=None, buf=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state.update(field=b"", value=b"")

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state["headers"].get("content-disposition", b""))
        state["name"] = disp.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in disp:
            if not csrf_ok(fields.get("csrf", "")):
                raise PageError("csrf")
            if state["size"]:
                raise PageError("problem", "upload_bad")  # one file per form
            state["file"] = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["file"]:
            state["size"] += end - start
            if state["size"] > cap:
                raise TooLarge()
            out.write(data[start:end])
        else:
            state["buf"] += data[start:end]
            if len(state["buf"]) > MAX_FIELD_BYTES:
                raise PageError("problem", "upload_bad")

    def on_part_end() -> None:
        if not state["file"]:
            fields[state["name"]] = state["buf"].decode("utf-8", "replace")

    parser = MultipartParser(boundary, {  # type: ignore[arg-type]
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    })
    try:
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
        out.close()
        if not state["size"]:
            raise PageError("problem", "upload_empty")
    except TooLarge:
        out.close()
        path.unlink(missing_ok=True)
        raise PageError("too_large", status=413) from None
    except BaseException:
        out.close()
        path.unlink(missing_ok=True)
        raise
    return path


def _plain(message: str, path: Path) -> str:
    """The library names the file by its path on the server; the visitor knows it as the uploaded file."""
    return message.replace(f"{path}: ", "").replace(str(path), "the uploaded file")


def with_org_policy(config: Config, ledger: Ledger, org: str) -> Config:
    """The configuration with the organisation's own policy in it, so the dry run (on a scratch ledger,
    which has no org_policies) shows what the import will post."""
    import dataclasses

    from bridge.policy import with_overrides

    policy = with_overrides(config.policy_for(org), ledger.get_org_policy(org))
    return dataclasses.replace(config, organisations={**config.organisations, org: policy})


def plan_upload(config: Config, ledger: Ledger, org: str, path: Path) -> int:
    """The dry run of an uploaded archive, stored as a planned job; the file is removed when it is refused."""
    from bridge.backfill import Backfill, BackfillOptions, _reason

    config = with_org_policy(config, ledger, org)
    try:
        run = Backfill(config, ledger, org, BackfillOptions(archive=path, dry_run=True, pace=config.web.backfill_pace))
        plan = run.plan()
        summary = run.dry_run(lambda _line: None)
    except BridgeError as exc:
        path.unlink(missing_ok=True)
        raise PageError("problem", _plain(str(exc), path)) from None
    for old in ledger.jobs(("planned",)):
        if old.org == org and old.kind == KIND:
            discard(config, ledger, org, old.id)
    data = {
        "archive": str(path),
        "plan": {"in_range": plan.in_range, "new": plan.new, "resumed": plan.resumed, "done_before": plan.done_before,
                 "media": plan.media, "missing_media": plan.missing_media_count, "to_deliver": plan.to_deliver},
        "summary": {"delivered": summary.delivered, "statuses": summary.statuses, "uploads": summary.uploads,
                    "skipped": summary.skipped, "failed": summary.failed, "cut": len(summary.cut),
                    "skip_reasons": [[_reason(r), n] for r, n in summary.skip_reasons.most_common(10)],
                    "failures": [[p, _plain(r, path)] for p, r in summary.failures[:10]]},
        "eta": summary.paced_seconds,
    }
    return ledger.add_job(org, KIND, "planned", data, now())


def discard(config: Config, ledger: Ledger, org: str, job_id: int) -> None:
    job = ledger.get_job(job_id)
    if job is None or job.org != org or job.state not in ("planned",):
        return
    Path(job.data.get("archive", "")).unlink(missing_ok=True)
    ledger.update_job(job_id, now(), expect=("planned",), state="cancelled")


def start(config: Config, ledger: Ledger, org: str, job_id: int) -> None:
    job = ledger.get_job(job_id)
    if job is None or job.org != org or not ledger.update_job(job_id, now(), expect=("planned",), state="queued",
                                                               total=int(job.data["plan"]["to_deliver"]),
                                                               eta_seconds=float(job.data["eta"])):
        raise PageError("problem", "job_gone")


class Runner:
    """One worker thread that runs queued (and resumes interrupted) imports, one at a time."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="archive-import", daemon=True)

    def begin(self) -> None:
        self.thread.start()

    def notify(self) -> None:
        self.wake.set()

    def close(self, timeout: float = 30.0) -> None:
        self.stop.set()
        self.wake.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def _loop(self) -> None:
        with Ledger.open(self.config.database) as ledger:
            self._clean(ledger)
            while not self.stop.is_set():
                jobs = ledger.jobs(("running", "queued"))
                if not jobs:
                    self.wake.wait()
                    self.wake.clear()
                    continue
                self._run(ledger, jobs[0].id)

    def _clean(self, ledger: Ledger) -> None:
        """Uploads no job still needs (a stopped upload, a finished import) are removed at start."""
        keep = {j.data.get("archive") for j in ledger.jobs(("planned", "queued", "running"))}
        for file in upload_dir(self.config).glob("archive-*.zip"):
            if str(file) not in keep:
                file.unlink(missing_ok=True)

    def _run(self, ledger: Ledger, job_id: int) -> None:
        from bridge.backfill import Backfill, BackfillOptions

        job = ledger.get_job(job_id)
        assert job is not None
        ledger.update_job(job_id, now(), state="running")
        path = Path(job.data["archive"])
        try:
            run = Backfill(with_org_policy(self.config, ledger, job.org), ledger, job.org,
                           BackfillOptions(archive=path, pace=self.config.web.backfill_pace), stop=self.stop)
            plan = run.plan()
            run.record()
            done_before = int(job.done)

            def progress(summary: Any, _post_id: str, _state: str) -> None:
                ledger.update_job(job_id, now(), done=done_before + summary.processed, eta_seconds=run.eta_now(),
                                  total=max(job.total, done_before + plan.to_deliver))

            summary = run.deliver(progress)
        except BridgeError as exc:
            ledger.update_job(job_id, now(), state="failed", error=_plain(str(exc), path))
            path.unlink(missing_ok=True)
            return
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker; it is logged and shown
            log.error("archive_import_failed", org=job.org, job=job_id, error=type(exc).__name__)
            ledger.update_job(job_id, now(), state="failed", error=f"internal error ({type(exc).__name__})")
            return
        if summary.stopped or self.stop.is_set():
            return  # stays running: resumed when the web process starts again
        result = {**job.data, "result": {k: v for k, v in asdict(summary).items()
                                         if k in ("delivered", "skipped", "failed", "statuses", "uploads")},
                  "error": summary.error}
        if summary.error:
            ledger.update_job(job_id, now(), state="failed", data=result, error=_plain(summary.error, path))
        else:
            ledger.update_job(job_id, now(), state="done", data=result, eta_seconds=0.0)
        with contextlib.suppress(OSError):
            path.unlink()
