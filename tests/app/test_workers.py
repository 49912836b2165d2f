"""The worker pool: heavy work off the event loop, small work inline (a hop costs more than it)."""

from __future__ import annotations

import threading

import pytest

from app.workers import INLINE_SIZE, WorkerPool


@pytest.mark.asyncio
async def test_small_work_runs_inline_and_large_work_on_the_pool() -> None:
    pool = WorkerPool(2)
    try:
        loop_thread = threading.get_ident()
        assert await pool.run_sized(INLINE_SIZE, threading.get_ident) == loop_thread
        assert await pool.run_sized(INLINE_SIZE + 1, threading.get_ident) != loop_thread
        assert await pool.run(threading.get_ident) != loop_thread
    finally:
        pool.close()


@pytest.mark.asyncio
async def test_errors_reach_the_caller_either_way() -> None:
    pool = WorkerPool(1)

    def fail() -> None:
        raise ValueError("bad input")

    try:
        for size in (0, INLINE_SIZE + 1):
            with pytest.raises(ValueError, match="bad input"):
                await pool.run_sized(size, fail)
    finally:
        pool.close()
