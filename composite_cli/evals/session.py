"""The eval session: the use case the CLI and the TUI share. Start an eval with its selection
persisted (file, content hash, the exact case ids, the filters and limit that chose them, modes,
repeats, mode parameters), resume exactly that selection after checking the file is unchanged, run
it with progress listeners, stop it. Front ends call this and only render.
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composite_cli.dotted import is_dotted_path
from composite_cli.evals.dataset import EvalCase, EvalFile, EvalFileError, EvalLineError, load_eval_file
from composite_cli.evals.runner import EvalError, EvalRunner, EvalSettings, Progress
from composite_cli.evals.shard import Shard
from composite_cli.runner import Runner
from composite_cli.traces import eval_records
from composite_cli.traces.reader import TraceReader

ProgressListener = Callable[[Progress], None]
_SHOWN_IDS = 5  # how many missing case ids a changed-file error names


def resume_command(eval_run_id: str, db: str | Path) -> str:
    """The command that finishes an eval, to print where it stopped: it names the database, so it
    works as printed whatever --db or config the eval ran with."""
    return f"composite eval --resume {eval_run_id} --db {shlex.quote(str(db))}"


class NoCaseSelected(EvalError):
    """The filters and limit leave no case to run; `skipped` holds the invalid lines skipped."""

    def __init__(self, message: str, skipped: Sequence[EvalLineError] = ()):
        super().__init__(message)
        self.skipped = list(skipped)


class EvalFileChanged(EvalError):
    """The file of the eval being resumed is not the one it started with."""


class EvalFileMissing(EvalError):
    """The file of the eval being resumed is gone."""


def select_cases(cases: Iterable[EvalCase], tags: Sequence[str], limit: int | None) -> list[EvalCase]:
    """The cases with any of `tags` (all when none), then the first `limit` of them."""
    chosen = [c for c in cases if not tags or set(tags) & set(c.tags)]
    return chosen[:limit] if limit is not None else chosen


@dataclass(frozen=True)
class Selection:
    """Everything that decides which cases an eval runs, as saved in its `settings`."""

    case_ids: list[str]
    tags: list[str]
    limit: int | None
    scorer: str | None
    skip_invalid: bool
    file_abs: str
    # `--shard i/N`: which slice of how many cases selected by the filters and limit (case_ids
    # holds the slice's ids); None when the eval runs the whole selection.
    shard: dict[str, int] | None = None

    def saved(self) -> dict[str, Any]:
        saved: dict[str, Any] = {
            "case_ids": self.case_ids,
            "filter": self.tags,
            "limit": self.limit,
            "scorer": self.scorer,
            "skip_invalid": self.skip_invalid,
            "file_abs": self.file_abs,
        }
        if self.shard is not None:
            saved["shard"] = self.shard
        return saved


class EvalSession:
    """One eval (new or resumed) ready to run: its id, its selected cases and its progress."""

    def __init__(self, evals: EvalRunner, eval_file: EvalFile, eval_run_id: str, *, resumed: bool):
        """An eval ready to run; `shard_text` says which slice it runs (`2/4 of 10 cases`) when
        it runs one (see evals/shard.py)."""
        self.shard_text: str | None = None
        self.evals = evals
        self.eval_file = eval_file
        self.eval_run_id = eval_run_id
        self.resumed = resumed
        self._listeners: list[ProgressListener] = []
        self._task: asyncio.Task[Any] | None = None
        evals.on_progress = self._notify

    @property
    def progress(self) -> Progress:
        return self.evals.progress

    @property
    def settings(self) -> EvalSettings:
        return self.evals.settings

    @property
    def cases(self) -> list[EvalCase]:
        return self.eval_file.cases

    @property
    def skipped(self) -> list[EvalLineError]:
        """The invalid lines skipped (with skip_invalid)."""
        return self.eval_file.errors

    def subscribe(self, listener: ProgressListener) -> None:
        """Call `listener(progress)` when the plan is known, when a case starts and when one ends."""
        self._listeners.append(listener)

    def _notify(self, progress: Progress) -> None:
        for listener in self._listeners:
            listener(progress)

    async def run(self, *, tick_s: float | None = None) -> str:
        """Run every selected case × mode × repeat not done yet; returns the final status (`done`).
        Cancelled (Ctrl-C, `stop`): recorded `interrupted`, and the cancellation goes on. Any other
        failure: recorded `error`, and raised. `tick_s`: also tell the listeners every `tick_s`
        seconds (so an ETA moves and a slow mode is never silent)."""
        self._task = asyncio.current_task()
        ticker = asyncio.create_task(self._tick(tick_s)) if tick_s else None
        try:
            return await self.evals.run(self.eval_file, self.eval_run_id)
        except asyncio.CancelledError:
            raise  # EvalRunner.run recorded `interrupted`
        except Exception:
            self.evals.finish(self.eval_run_id, "error")
            raise
        finally:
            self._task = None
            if ticker is not None:
                ticker.cancel()

    async def _tick(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            if self.progress.total:
                self._notify(self.progress)

    def plan(self) -> tuple[int, int]:
        """(cases run at once, worker processes) for what is left of this eval."""
        specs = list(self.evals.check_params().values())
        runs = len(self.cases) * len(specs) * self.settings.repeats
        return self.evals.plan(specs, runs - len(self.evals.done_ids(self.eval_run_id)))

    def resume_command(self) -> str:
        return resume_command(self.eval_run_id, self.evals.runner.settings.db_path)

    def stop(self) -> bool:
        """Stop a running eval (from its event loop): finished results are kept, it is recorded
        `interrupted`. False when it was not running."""
        if self._task is None or self._task.done():
            return False
        self._task.cancel()
        return True

    def interrupted(self) -> None:
        """Record the eval `interrupted` when it was stopped outside `run` (Ctrl-C in asyncio.run)."""
        self.evals.finish(self.eval_run_id, "interrupted")


class EvalSessions:
    """Starts and resumes evals on a Runner (beside it, as the CLI and the TUI both use it)."""

    def __init__(self, runner: Runner):
        self.runner = runner

    def _evals(self, settings: EvalSettings) -> EvalRunner:
        evals = EvalRunner(self.runner, settings)
        evals.check_params()  # unknown modes or parameters fail before anything is recorded
        return evals

    def start(
        self,
        file: str | Path,
        modes: Sequence[str],
        *,
        tags: Sequence[str] = (),
        limit: int | None = None,
        scorer: str | None = None,
        skip_invalid: bool = False,
        repeats: int = 1,
        concurrency: int | None = None,
        cache: bool = True,
        params: dict[str, dict[str, Any]] | None = None,
        shard: Shard | None = None,
        workers: int = 1,
    ) -> EvalSession:
        """A new eval of FILE's cases with any of `tags`, the first `limit` of them (then `shard`'s
        slice of those), through `modes` (names or aliases), recorded with its selection. `scorer`
        is the user's own choice (the command line), so a dotted one needs no allow-list entry; the
        file's lines do. `workers`: processes that run the cases (1: this one)."""
        mode_names = [self.runner.mode(m).name for m in modes]
        allow = self.runner.settings.allow_code + ((scorer,) if scorer and is_dotted_path(scorer) else ())
        eval_file = load_eval_file(file, default_scorer=scorer, skip_invalid=skip_invalid, allow_code=allow)
        eval_file.cases = select_cases(eval_file.cases, tags, limit)
        if not eval_file.cases:
            raise NoCaseSelected("no case left after --filter/--limit", eval_file.errors)
        selected = len(eval_file.cases)
        if shard is not None:
            eval_file.cases = shard.take(eval_file.cases)
        settings = EvalSettings(
            modes=mode_names,
            repeats=repeats,
            concurrency=concurrency,
            cache=cache,
            params=params or {},
            workers=workers,
        )
        evals = self._evals(settings)
        selection = Selection(
            case_ids=[c.id for c in eval_file.cases],
            tags=list(tags),
            limit=limit,
            scorer=scorer,
            skip_invalid=skip_invalid,
            file_abs=str(Path(file).resolve()),
            shard=shard.saved(selected) if shard is not None else None,
        )
        eval_run_id = evals.start(eval_file, mode_names, selection=selection.saved())
        session = EvalSession(evals, eval_file, eval_run_id, resumed=False)
        session.shard_text = _shard_text(selection.shard)
        return session

    def resume(
        self,
        ref: str,
        *,
        concurrency: int | None = None,
        cache: bool = True,
        retry_errors: bool = False,
        params: dict[str, dict[str, Any]] | None = None,
        workers: int = 1,
    ) -> EvalSession:
        """The eval named by `ref` (id, unique prefix or `latest`), to finish: exactly the cases,
        modes, repeats and parameters it started with. Refused when its file changed or is gone.
        `params` apply only to an eval recorded before its parameters were saved; given for one
        that saved its own, they must be the same (a resumed eval never mixes two settings)."""
        store = self.runner.store
        if store is None:
            raise EvalError("evals need the trace database (tracing cannot be off)")
        eval_run_id = TraceReader(store).eval_run_id(ref)
        record = eval_records.eval_run(store, eval_run_id)
        saved = _checked_settings(record)
        path = self._saved_path(record, self.runner.settings.allow_code)
        eval_file = load_eval_file(
            path,
            default_scorer=saved.get("scorer"),
            skip_invalid=bool(saved.get("skip_invalid")),
            # the scorer saved in the trace database is data now: it needs the allow-list like a line
            allow_code=self.runner.settings.allow_code,
        )
        if eval_file.sha256 != record.file_hash:  # changed between the check and the load
            raise EvalFileChanged(
                _what_changed(path, record, eval_file.sha256, self.runner.settings.allow_code)
            )
        eval_file.path = Path(record.file)  # as it was given: the report names it so
        eval_file.cases = _saved_cases(eval_file, record)
        if "params" in saved and params and params != saved["params"]:
            raise EvalError(
                f"--param cannot change eval {eval_run_id} when it is resumed: it finishes with the "
                f"parameters it started with ({_show_params(saved['params'])}); start a new eval to "
                "change them"
            )
        settings = EvalSettings(
            modes=record.modes,
            repeats=int(saved.get("repeats", 1)),
            concurrency=concurrency,
            cache=cache,
            retry_errors=retry_errors,
            params=saved["params"] if "params" in saved else params or {},
            workers=workers,
        )
        evals = self._evals(settings)
        eval_records.resume_eval(store, eval_run_id)
        session = EvalSession(evals, eval_file, eval_run_id, resumed=True)
        session.shard_text = _shard_text(saved.get("shard"))
        return session

    @staticmethod
    def _saved_path(record: eval_records.EvalRunRecord, allow_code: Sequence[str]) -> Path:
        """The eval's file, as given when it started (relative to where it started, so also tried at
        its saved absolute path), checked to be the very same bytes."""
        candidates = [Path(record.file)]
        if record.settings.get("file_abs"):
            candidates.append(Path(str(record.settings["file_abs"])))
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise EvalFileMissing(
                f"{record.file}: the eval file of eval {record.id} is missing; it cannot be resumed "
                "without it (put it back, or start a new eval)"
            )
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise EvalFileMissing(f"{record.file}: cannot read the eval file: {exc.strerror}") from None
        if digest != record.file_hash:
            raise EvalFileChanged(_what_changed(path, record, digest, allow_code))
        return path


def _shard_text(saved: Any) -> str | None:
    """`2/4 of 10 cases` from a saved shard (None when the eval runs its whole selection)."""
    if not isinstance(saved, dict):
        return None
    return f"{saved.get('index')}/{saved.get('count')} of {saved.get('selected')} cases"


def _checked_settings(record: eval_records.EvalRunRecord) -> dict[str, Any]:
    """The eval's saved settings, each field checked (a trace database can be merged from anywhere:
    its values are input like any other)."""
    saved = record.settings

    def bad(field: str, expected: str) -> EvalError:
        return EvalError(
            f"eval {record.id}: saved settings: {field}: expected {expected}, got {saved[field]!r}"
        )

    repeats = saved.get("repeats", 1)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise bad("repeats", "a whole number ≥ 1")
    limit = saved.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise bad("limit", "a whole number ≥ 1 or null")
    for field in ("case_ids", "filter"):
        value = saved.get(field)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise bad(field, "a list of strings")
    for field in ("scorer", "file_abs"):
        if saved.get(field) is not None and not isinstance(saved[field], str):
            raise bad(field, "a string")
    params = saved.get("params")
    if params is not None and not (
        isinstance(params, dict) and all(isinstance(v, dict) for v in params.values())
    ):
        raise bad("params", "an object of objects (mode → parameters)")
    return saved


def _show_params(params: dict[str, dict[str, Any]]) -> str:
    """As --param would give them: moa-v1.proposer_max_tokens=96, ... (or none)."""
    shown = [f"{mode}.{key}={value}" for mode, values in params.items() for key, value in values.items()]
    return ", ".join(shown) or "none"


def _saved_cases(eval_file: EvalFile, record: eval_records.EvalRunRecord) -> list[EvalCase]:
    """The cases the eval selected when it started: by their saved ids, else (evals recorded
    before the ids were saved) by the saved filter and limit, else (started from the TUI, which
    saved neither) the first `cases` cases, the count the eval recorded."""
    saved = record.settings
    if isinstance(saved.get("case_ids"), list):
        by_id = {c.id: c for c in eval_file.cases}
        missing = [str(i) for i in saved["case_ids"] if i not in by_id]
        if missing:  # same bytes, but a line is now refused (e.g. a scorer no longer allowed)
            raise EvalError(
                f"{record.file}: {_ids(missing)} of eval {record.id} no longer load; start a new eval"
            )
        return [by_id[str(i)] for i in saved["case_ids"]]
    if "limit" in saved or "filter" in saved:
        cases = select_cases(eval_file.cases, saved.get("filter") or [], saved.get("limit"))
    else:
        cases = eval_file.cases[: record.cases] if record.cases else eval_file.cases
    if not cases:
        raise NoCaseSelected("no case left after --filter/--limit")
    return cases


def _ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:_SHOWN_IDS]) + (", ..." if len(ids) > _SHOWN_IDS else "")
    return f"{len(ids)} selected case{'s' if len(ids) != 1 else ''} ({shown})"


def _what_changed(
    path: Path, record: eval_records.EvalRunRecord, digest: str, allow_code: Sequence[str]
) -> str:
    """One line: the file changed since the eval started, and what of its selection is gone."""
    head = (
        f"{record.file} changed since eval {record.id} started (sha256 {record.file_hash[:12]}, "
        f"now {digest[:12]})"
    )
    ids = record.settings.get("case_ids")
    detail = ""
    if isinstance(ids, list):
        try:
            now = {c.id for c in load_eval_file(path, skip_invalid=True, allow_code=allow_code).cases}
        except EvalFileError:
            now = set()
        gone = [str(i) for i in ids if i not in now]
        detail = f": {_ids(gone)} no longer in it" if gone else ": lines were edited, added or removed"
    return f"{head}{detail}; start a new eval instead"
