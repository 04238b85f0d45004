"""Continuous batching: requests from one pack and from concurrent invocations decode together,
and a request can join (or leave) the running batch between any two decode steps.

One worker thread owns the engine. When idle it takes the first waiting request and keeps
collecting for up to `wait_ms` (or until `max_batch_size`), then prefills them as a batch. While a
batch runs, every iteration admits whatever is waiting into the free slots (no wait), runs one
decode step, and resolves the requests that finished, so a short answer is returned as soon as
it is done and its slot goes to the next request. A pack larger than the batch size fills the
slots as they free up.

Only this thread computes once the model is loaded (the loading thread ends): libgomp throttles
its spin-wait when more threads than cores belong to OpenMP teams, and a second live team (say,
the main thread's) made decoding here 2.5x slower on 2 cores (measured: a 576x1536 int4 matmul took
31 us in the main thread, 80 us in a second thread while the main thread's team existed, 31 us in
a thread alone; `bench/RESULTS.md`). OpenMP's thread count is per thread, so it is set again here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future

from gpu_jobs.engine.base import GenerationEngine, GenerationRequest, GenerationResult
from gpu_jobs.engine.decode_batch import DecodeBatch

logger = logging.getLogger(__name__)

_Item = tuple[GenerationRequest, "Future[GenerationResult]"]


class ContinuousBatcher:
    def __init__(self, engine: GenerationEngine, max_batch_size: int, wait_ms: int, threads: int | None = None) -> None:
        self._engine = engine
        self._threads = threads
        self._max = max_batch_size
        self._wait = wait_ms / 1000
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self.batches_run = 0  # prefills: groups of requests admitted together
        self.steps_run = 0  # decode steps
        self._thread.start()

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        future: Future[GenerationResult] = Future()
        self._queue.put((request, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _collect(self, free: int, idle: bool) -> list[_Item]:
        """Up to `free` waiting requests; when idle, block for the first and wait `wait_ms` for more."""
        items: list[_Item] = []
        deadline = None
        while len(items) < free and not self._closed:
            try:
                if idle and not items:
                    item = self._queue.get()
                    deadline = time.monotonic() + self._wait
                elif deadline is not None:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                else:
                    item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._closed = True
                break
            items.append(item)
        return items

    def _run(self) -> None:
        if self._threads:
            import torch

            torch.set_num_threads(self._threads)
        running = DecodeBatch()
        while not (self._closed and not running.rows):
            items = self._collect(self._max - len(running.rows), idle=not running.rows)
            try:
                if items:
                    admitted = self._engine.admit([r for r, _ in items], tickets=[f for _, f in items])
                    self.batches_run += 1
                    running = running.merge(admitted)
                if running.rows:
                    self._engine.step(running)
                    self.steps_run += 1
            except Exception as error:  # the engine failed: every request in flight hears it
                logger.exception("generation failed")
                for row in running.rows + running.finished:
                    row.ticket.set_exception(error)
                for _, future in items:
                    if not future.done():
                        future.set_exception(error)
                running = DecodeBatch()
                continue
            for row in running.take_finished():
                row.ticket.set_result(row.result)
