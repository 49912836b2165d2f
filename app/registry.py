"""The runtimes of one server, keyed by model id, and the rule that picks one for a request.

A request may name its model (`model` in the body or the query). Without one, the first configured
model that serves the task answers, so every single-model call keeps working when models are added.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from app.errors import InvalidInput, ModelNotFound
from app.runtime import ModelRuntime

# Tasks a route can ask for; "any" is for /tokenize and /decode, which every model can answer.
ANY_TASK = "any"


@dataclass(frozen=True)
class ModelSelection:
    """Why this model directory is served (logged and shown in /info)."""

    path: str
    reason: str
    demo: bool


class DuplicateModelId(Exception):
    """Two model directories carry the same model id; the server cannot route between them."""


class Registry:
    def __init__(self, runtimes: Sequence[ModelRuntime], selections: Sequence[ModelSelection]) -> None:
        if not runtimes:
            raise ValueError("a registry needs at least one model")
        self._runtimes: dict[str, ModelRuntime] = {}
        self.selections: dict[str, ModelSelection] = {}
        for runtime, selection in zip(runtimes, selections, strict=True):
            if runtime.model_id in self._runtimes:
                raise DuplicateModelId(
                    f"two model directories have the model id {runtime.model_id!r} "
                    f"({self.selections[runtime.model_id].path} and {selection.path}); export one with --model-id"
                )
            self._runtimes[runtime.model_id] = runtime
            self.selections[runtime.model_id] = selection

    def __iter__(self) -> Iterator[ModelRuntime]:
        return iter(self._runtimes.values())

    def __len__(self) -> int:
        return len(self._runtimes)

    @property
    def default(self) -> ModelRuntime:
        """The first configured model: /info's top-level fields describe it."""
        return next(iter(self._runtimes.values()))

    @property
    def ids(self) -> list[str]:
        return list(self._runtimes)

    def get(self, model: str | None, task: str) -> ModelRuntime:
        """The runtime for a request: the named model, or the first that serves `task`."""
        if model is not None:
            runtime = self._runtimes.get(model)
            if runtime is None:
                raise ModelNotFound(f"the model {model!r} is not served here; models: {', '.join(self.ids)}")
            if task != ANY_TASK and not runtime.serves(task):
                raise InvalidInput(f"the model {model!r} does not serve {task}; {self._serving(task)}")
            return runtime
        for runtime in self:
            if task == ANY_TASK or runtime.serves(task):
                return runtime
        raise InvalidInput(f"no model here serves {task}; models: {', '.join(self.ids)}")

    def _serving(self, task: str) -> str:
        serving = [runtime.model_id for runtime in self if runtime.serves(task)]
        return f"models that do: {', '.join(serving)}" if serving else "no model here does"

    @property
    def ready(self) -> bool:
        return all(runtime.ready for runtime in self)

    @property
    def alive(self) -> bool:
        return all(runtime.alive for runtime in self)

    def not_ready(self) -> dict[str, str]:
        """Model id -> why it is not ready, for each model that is not."""
        return {runtime.model_id: reason for runtime in self if (reason := runtime.not_ready_reason()) is not None}

    async def start(self) -> None:
        for runtime in self:
            await runtime.start()

    async def stop(self) -> None:
        for runtime in self:
            await runtime.stop()
