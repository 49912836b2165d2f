"""The small thread pool for request work that is too heavy for the event loop.

Tokenization, fill-mask decoding and the encoding of large responses run here, so the loop only
parses, admits and awaits: /health answers while a 64-input request is tokenized. The pool is shared
by every model; its size bounds the CPU such work can take from inference.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


# Work up to this size (characters to tokenize, floats to encode, candidates to decode) runs inline:
# tens of microseconds, less than the two thread switches a hop to the pool costs (measured: the
# hops took 5-10% of throughput at concurrency 1-16 on one-sentence requests).
INLINE_SIZE = 2048


class WorkerPool:
    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="distilserve-work")

    async def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def run_sized(self, size: int, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`run`, except that work of at most INLINE_SIZE runs right here on the event loop."""
        if size <= INLINE_SIZE:
            return function(*args, **kwargs)
        return await self.run(function, *args, **kwargs)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
