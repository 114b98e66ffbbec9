"""Run a batch of jobs: in this process, in local worker processes (``-j N``) or on a Dask
cluster (``--scheduler ADDRESS``), with the same job function and the same reporting.

Results are printed in input order as soon as every earlier one is in; on a terminal one
progress bar shows the whole batch (files, bytes, MP/s, time left) and a summary line ends
it. A failing file never stops the others; the exit code is 1 at the end if any failed.
Ctrl-C stops the workers (each removes its partial output) and ends with 130.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import click

from ..api import set_threads as set_tile_threads
from .files import STDIO, is_url
from .jobs import Outcome, Settings, Task, run_task

Submit = Callable[[Task], "cf.Future[Outcome]"]
ATTEMPTS = 2  # a job whose worker process died is run once more in a fresh pool


def cores() -> int:
    """The CPU cores this process may use (the default of ``-j``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- reporting


@dataclass
class Totals:
    files: int = 0
    failed: int = 0
    in_bytes: int = 0
    out_bytes: int = 0
    pixels: int = 0


def _input_size(task: Task) -> int | None:
    if task.source == STDIO or is_url(task.source):
        return None
    try:
        return os.stat(task.source).st_size
    except OSError:
        return 0


class Reporter:
    """Prints outcomes in input order, drives the progress bar, adds up the totals."""

    def __init__(self, tasks: Sequence[Task], bar: bool) -> None:
        self.tasks, self.next = tasks, 0
        self.waiting: dict[int, Outcome] = {}
        self.totals = Totals()
        self.started = time.perf_counter()
        self.bar = None
        if bar:
            from tqdm import tqdm

            sizes = [_input_size(t) for t in tasks]
            known = all(s is not None for s in sizes)
            self.bar = tqdm(
                total=sum(s or 0 for s in sizes) if known else len(tasks),
                unit="B" if known else "file",
                unit_scale=known,
                file=sys.stderr,
                dynamic_ncols=True,
                desc=f"0/{len(tasks)} files",
                leave=False,
            )
            self.sizes = sizes if known else [1] * len(tasks)

    def echo(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            click.echo(text, err=True)

    def done(self, index: int, outcome: Outcome) -> None:
        self.waiting[index] = outcome
        t = self.totals
        t.files += 1
        t.failed += not outcome.ok
        t.in_bytes += outcome.in_bytes
        t.out_bytes += outcome.out_bytes
        t.pixels += outcome.pixels
        if self.bar is not None:
            self.bar.update(self.sizes[index])
            self.bar.set_description(f"{t.files}/{len(self.tasks)} files", refresh=False)
            self.bar.set_postfix_str(f"{self.rate():.2f} MP/s")
        while self.next in self.waiting:
            out = self.waiting.pop(self.next)
            self.next += 1
            if out.traceback:
                self.echo(out.traceback.rstrip("\n"))
            for line in out.lines:
                self.echo(line)

    def rate(self) -> float:
        return self.totals.pixels / 1e6 / max(time.perf_counter() - self.started, 1e-9)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def summary(self, verb: str, workers: str) -> str:
        t = self.totals
        ok = t.files - t.failed
        sizes = f"{t.in_bytes} => {t.out_bytes} bytes"
        if verb == "compressed" and t.in_bytes:
            sizes += f" ({100 * t.out_bytes / t.in_bytes:.2f} % of the input files)"
        elif verb == "OK":
            sizes = f"{t.in_bytes} bytes"
        seconds = time.perf_counter() - self.started
        return (
            f"{ok} of {len(self.tasks)} files {verb}, {t.failed} failed: {sizes}; "
            f"{seconds:.1f} s, {self.rate():.2f} MP/s, {workers}"
        )


# ----------------------------------------------------------------------------- workers


_busy = False


def _worker_interrupted(signum: int, frame: object) -> None:
    """Ctrl-C in a worker process: unwind the job (its partial output is removed), or end
    at once between jobs; a second one is ignored while the job unwinds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _busy:
        raise KeyboardInterrupt
    os._exit(130)


def _watch_parent(parent: int) -> None:
    """End this worker when the batch's process is gone (killed, say): nothing else would
    (a worker waits for its next job forever)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def worker_start(threads: int, parent: int) -> None:
    """Set up a local worker process: its share of the cores for the networks' threads,
    Ctrl-C handling, and an end when the parent ends."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read when (if) torch is imported
    set_tile_threads(threads)
    signal.signal(signal.SIGINT, _worker_interrupted)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def worker_run(task: Task, settings: Settings) -> Outcome:
    """``run_task`` in a local worker process."""
    global _busy
    _busy = True
    try:
        return run_task(task, settings)
    finally:
        _busy = False


def _stop_local_workers() -> None:
    for child in multiprocessing.active_children():
        try:
            os.kill(child.pid or 0, signal.SIGINT)
        except OSError:
            pass


@contextlib.contextmanager
def _second_interrupt_exits() -> Iterator[None]:
    """While the workers are being stopped, a second Ctrl-C ends this process at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _died(task: Task, exc: BaseException | str) -> Outcome:
    return Outcome(task.name, False, [f"idfc: {task.name}: the worker died ({exc})"])


def _collect(
    futures: dict[cf.Future[Outcome], int], tasks: Sequence[Task]
) -> Iterator[tuple[int, Outcome | None]]:
    """(index, outcome) as futures finish; None for a job whose worker process died."""
    for future in cf.as_completed(futures):
        index = futures[future]
        try:
            yield index, future.result()
        except cf.process.BrokenProcessPool:
            yield index, None
        except cf.CancelledError:
            continue
        except Exception as exc:  # noqa: BLE001 - Dask: KilledWorker, lost connection, ...
            yield index, _died(tasks[index], exc)


# ----------------------------------------------------------------------------- batches


def _sequential(tasks: Sequence[Task], settings: Settings, report: Reporter, progress) -> None:
    for index, task in enumerate(tasks):
        outcome = run_task(task, settings, progress(task.name) if progress else None)
        report.done(index, outcome)
        if outcome.stop:
            return


def _local_pool(
    tasks: Sequence[Task], settings: Settings, report: Reporter, jobs: int, threads: int | None
) -> None:
    todo, attempts = list(range(len(tasks))), [0] * len(tasks)
    threads = threads or max(1, cores() // jobs)
    while todo:
        pool = cf.ProcessPoolExecutor(
            max_workers=min(jobs, len(todo)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=worker_start,
            initargs=(threads, os.getpid()),
        )
        try:
            futures = {pool.submit(worker_run, tasks[i], settings): i for i in todo}
            todo = []
            for index, outcome in _collect(futures, tasks):
                if outcome is None:  # its worker process died: once more in a fresh pool
                    attempts[index] += 1
                    if attempts[index] < ATTEMPTS:
                        todo.append(index)
                        continue
                    outcome = _died(tasks[index], "killed, or out of memory")
                report.done(index, outcome)
        except KeyboardInterrupt:
            with _second_interrupt_exits():
                _stop_local_workers()
                pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        todo.sort()


def _dask(tasks: Sequence[Task], settings: Settings, report: Reporter, address: str) -> int:
    try:
        from distributed import Client
    except ImportError:
        raise click.UsageError(
            "--scheduler needs dask.distributed: pip install 'idfcompress[cluster]'"
        ) from None
    try:
        client = Client(address)  # timeout: dask's distributed.comm.timeouts.connect
    except OSError as exc:
        raise click.UsageError(f"cannot reach the scheduler at {address}: {exc}") from None
    try:
        workers = len(client.scheduler_info().get("workers", {}))
        executor = client.get_executor(pure=False)
        futures = {executor.submit(run_task, task, settings): i for i, task in enumerate(tasks)}
        try:
            for index, outcome in _collect(futures, tasks):
                report.done(index, outcome or _died(tasks[index], "lost"))
        except KeyboardInterrupt:
            with _second_interrupt_exits():
                executor.shutdown(wait=False)
            raise
        return workers
    finally:
        client.close()


def absolute(task: Task) -> Task:
    """The task with local paths made absolute (a cluster's workers have other folders)."""

    def full(name: str | None) -> str | None:
        if name is None or name == STDIO or is_url(name):
            return name
        return os.path.abspath(name)

    return Task(task.command, full(task.source) or "", task.name, full(task.target),
                task.make_folders)  # fmt: skip


def run_batch(
    tasks: Sequence[Task],
    settings: Settings,
    *,
    verb: str,
    jobs: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[str], Callable[[int, int], None] | None] | None = None,
    threads: int | None = None,
) -> bool:
    """Run every task and print the outcomes (a summary line after several); returns
    whether all succeeded. ``progress(name)`` gives a per-tile callback for a lone file;
    ``threads``: the networks' threads in each local worker (default: its share of the
    cores)."""
    several = len(tasks) > 1
    bar = several and not settings.quiet and sys.stderr.isatty()
    report = Reporter(tasks, bar)
    uses_stdio = any(STDIO in (t.source, t.target) for t in tasks)
    jobs = min(jobs or cores(), len(tasks))
    try:
        if scheduler is not None:
            if uses_stdio:
                raise click.UsageError("--scheduler takes files, not - (stdin/stdout)")
            count = _dask([absolute(t) for t in tasks], settings, report, scheduler)
            workers = f"{count} Dask worker(s)"
        elif jobs > 1 and not uses_stdio:
            _local_pool(tasks, settings, report, jobs, threads)
            workers = f"{jobs} processes"
        else:
            _sequential(tasks, settings, report, progress if not several else None)
            workers = "1 process"
    finally:
        report.close()
    if several and not settings.quiet:
        click.echo(report.summary(verb, workers), err=True)
    return report.totals.failed == 0 and report.totals.files == len(tasks)
