"""Group commit: writes that queue while a transaction runs share the next one.

A caller hands over what it wants written and waits; one writer task drains the
queue, writes everything queued in one transaction, commits once, then publishes
what the writes published (in order) and only then answers the callers. So
an answer still means "committed", while concurrent writers share BEGIN/COMMIT
and, on SQLite, never queue for each other's write lock.

A write that fails must not cost the others: the batch is rolled back and each
item is written again in a transaction of its own, where its error reaches its
caller alone. That is cheaper than a SAVEPOINT around each piece (two
statements each, for a case that should not happen), but it means work may run
more than once: a write must not have effects outside the unit of work other
than recomputing the same values. A database that cannot be written at all (locked,
unreachable) fails the whole batch at once: retrying one by one would only
repeat the wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError

from app.events import UnitOfWork

log = logging.getLogger(__name__)

T = TypeVar("T")
In = TypeVar("In")  # what a caller hands over
R = TypeVar("R")  # what it gets back once committed
Work = Callable[[UnitOfWork], Awaitable[T]]
Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[Any]"]
WriteBatch = Callable[[UnitOfWork, list[In]], Awaitable[list[R]]]


@dataclass(slots=True)
class _Job(Generic[In, R]):
    item: In
    size: int
    done: asyncio.Future[R]


class GroupCommit(Generic[In, R]):
    """One writer per instance; `write_batch(uow, items)` writes a batch without
    committing and returns one result per item. `max_batch`/`max_bytes` bound a
    transaction (it holds SQLite's write lock while it runs); after a batch of
    several, the writer waits `commit_delay` seconds for more before the next
    (PostgreSQL's commit_delay idea; a lone write is never delayed). A single item
    that meets an IntegrityError (a concurrent writer elsewhere created the same
    row) is written again up to `retries` times: the rerun finds the row."""

    def __init__(
        self,
        write_batch: WriteBatch[In, R],
        unit_of_work: Callable[[], AbstractAsyncContextManager[UnitOfWork]],
        spawn: Spawn,
        name: str,
        *,
        max_batch: int = 32,
        max_bytes: int = 16 * 1024 * 1024,
        commit_delay: float = 0.0,
        retries: int = 1,
    ) -> None:
        self.write_batch = write_batch
        self.unit_of_work = unit_of_work
        self.spawn = spawn
        self.name = name
        self.max_batch = max_batch
        self.max_bytes = max_bytes
        self.commit_delay = commit_delay
        self.retries = retries
        self.pending: deque[_Job[In, R]] = deque()
        self.writing = 0  # items in the transaction now running
        self.last_batch = 0
        self.writer: asyncio.Task[Any] | None = None

    async def submit(self, item: In, *, size: int = 0) -> R:
        """Write `item` in the next transaction; returns its result once committed.

        Cancelling the caller before its batch starts drops the item unwritten."""
        return await self.enqueue(item, size=size)

    def enqueue(self, item: In, *, size: int = 0) -> asyncio.Future[R]:
        """Queue `item` now (items are written in the order they are queued); the
        future resolves once it is committed. Cancelling the future before its batch
        starts drops the item unwritten."""
        job: _Job[In, R] = _Job(item, size, asyncio.get_running_loop().create_future())
        self.pending.append(job)
        writer = self.writer
        if writer is None or writer.done():
            self.writer = self.spawn(self._drain(), self.name)
        return job.done

    def _next_batch(self) -> list[_Job[In, R]]:
        batch: list[_Job[In, R]] = []
        size = 0
        while self.pending and len(batch) < self.max_batch and size < self.max_bytes:
            job = self.pending.popleft()
            if job.done.done():
                continue  # the caller gave up (e.g. its connection went away)
            batch.append(job)
            size += job.size
        return batch

    async def _drain(self) -> None:
        batch: list[_Job[In, R]] = []
        try:
            while self.pending:
                if self.commit_delay and self.last_batch > 1 and len(self.pending) < self.max_batch:
                    await asyncio.sleep(self.commit_delay)
                else:
                    # One turn of the loop: callers woken with this one join the batch
                    # instead of waiting for the next commit.
                    await asyncio.sleep(0)
                batch = self._next_batch()
                self.last_batch = self.writing = len(batch)
                if batch:
                    await self._write(batch)
                batch = []
                self.writing = 0
            self.last_batch = 0
        except BaseException:
            self.writing = self.last_batch = 0
            # Cancelled at shutdown: nobody may wait forever.
            for job in [*batch, *self.pending]:
                if not job.done.done():
                    job.done.set_exception(RuntimeError(f"{self.name} stopped"))
            self.pending.clear()
            raise

    async def _write(self, batch: list[_Job[In, R]]) -> None:
        try:
            results = await self._transaction(batch)
        except OperationalError as exc:
            for job in batch:
                _fail(job, exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
                return
            log.info("%s: a batch of %d failed (%r); one by one", self.name, len(batch), exc)
            for job in batch:
                if not job.done.done():
                    await self._write([job])
            return
        for job, result in zip(batch, results, strict=True):
            if not job.done.done():
                job.done.set_result(result)

    async def _transaction(self, batch: list[_Job[In, R]]) -> list[R]:
        attempt = 0
        while True:
            try:
                async with self.unit_of_work() as uow:
                    results = await self.write_batch(uow, [job.item for job in batch])
                    await uow.commit()
                    return results
            except IntegrityError:
                if len(batch) > 1 or attempt >= self.retries:
                    raise
                attempt += 1


def _fail(job: _Job[Any, Any], exc: BaseException) -> None:
    if not job.done.done():
        job.done.set_exception(exc)


class Together(Generic[T]):
    """A piece of work for a `WorkQueue` that can also be written in one go with the
    others of its class in the same batch: a few set-based statements for all of
    them instead of a round of statements each.

    `write_many` gets every piece of its class in the batch, in the order they were
    queued, and returns one result each; they are written before the batch's other
    pieces. That reordering is safe because the pieces of a batch were all waiting
    at once: none was answered before another was queued, so their order only
    matters among those one caller queued in sequence, and `write_many` must keep
    that order. Alone (a batch of one, or the one-by-one rerun after a failed batch)
    a piece is a `write_many` of one."""

    async def __call__(self, uow: UnitOfWork) -> T:
        (result,) = await self.write_many(uow, [self])
        return result  # type: ignore[no-any-return]

    @classmethod
    async def write_many(cls, uow: UnitOfWork, works: list[Any]) -> list[Any]:
        raise NotImplementedError


async def _each(uow: UnitOfWork, works: list[Work[Any]]) -> list[Any]:
    """Each piece in arrival order; `Together` pieces first, by class, in one go."""
    classes: dict[type[Together[Any]], list[int]] = {}
    for index, work in enumerate(works):
        if isinstance(work, Together):
            classes.setdefault(type(work), []).append(index)
    results: list[Any] = [None] * len(works)
    written: set[int] = set()
    for cls, indexes in classes.items():
        outcomes = await cls.write_many(uow, [works[i] for i in indexes])
        for index, outcome in zip(indexes, outcomes, strict=True):
            results[index] = outcome
        written.update(indexes)
    for index, work in enumerate(works):
        if index not in written:
            results[index] = await work(uow)
    return results


class WorkQueue(GroupCommit[Work[Any], Any]):
    """Group commit of independent pieces of work: each is a coroutine function that
    writes through the unit of work it is given (without committing); they run in
    arrival order in the batch's transaction."""

    def __init__(
        self,
        unit_of_work: Callable[[], AbstractAsyncContextManager[UnitOfWork]],
        spawn: Spawn,
        name: str,
        **bounds: Any,
    ) -> None:
        super().__init__(_each, unit_of_work, spawn, name, **bounds)

    async def run(self, work: Work[T], *, size: int = 0) -> T:
        return await self.start(work, size=size)

    def start(self, work: Work[T], *, size: int = 0) -> asyncio.Future[T]:
        """`enqueue` for a piece of work: queued now, its result once committed."""
        future: asyncio.Future[T] = self.enqueue(work, size=size)
        return future
