"""Dynamic batching: requests from one pack and from concurrent invocations generate together.

One worker thread owns the engine. It takes the first waiting request, then keeps collecting for
up to `wait_ms` (or until `max_batch_size`), generates the whole batch, and resolves each
request's future. A pack larger than the batch size simply spans several batches.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future

from gpu_jobs.engine.base import GenerationEngine, GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)


class DynamicBatcher:
    def __init__(self, engine: GenerationEngine, max_batch_size: int, wait_ms: int) -> None:
        self._engine = engine
        self._max = max_batch_size
        self._wait = wait_ms / 1000
        self._queue: queue.Queue[tuple[GenerationRequest, Future[GenerationResult]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self.batches_run = 0
        self._thread.start()

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        future: Future[GenerationResult] = Future()
        self._queue.put((request, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self._wait
            while len(batch) < self._max:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            self._generate(batch)

    def _generate(self, batch: list[tuple[GenerationRequest, Future[GenerationResult]]]) -> None:
        try:
            results = self._engine.generate([request for request, _ in batch])
        except Exception as error:  # the engine failed for the whole batch: every caller hears it
            logger.exception("generation failed")
            for _, future in batch:
                future.set_exception(error)
            return
        self.batches_run += 1
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
