"""A point of a sweep or a search: a layout (tensor-parallel size, replicas) with its vLLM settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from tpserve import axes
from tpserve.axes import Settings
from tpserve.fetch.errors import ConfigError


@dataclass(frozen=True)
class Point:
    """One layout — TENSOR GPUs per replica, REPLICAS independent servers — with its vLLM SETTINGS
    (:mod:`tpserve.axes`: ``(("max-num-seqs", "512"),)``; ``default`` leaves a flag to vLLM)."""

    tensor: int
    replicas: int = 1
    settings: Settings = ()

    @property
    def devices(self) -> int:
        return self.tensor * self.replicas

    @property
    def label(self) -> str:
        """``tp2x1``, then the settings that are not vLLM's default: ``tp2x1-max-num-seqs=512-kv-cache-dtype=fp8``."""
        return "-".join(part for part in (f"tp{self.tensor}x{self.replicas}", axes.label(self.settings)) if part)

    def describe(self) -> dict:
        """The point as failures.json and tune.json write it."""
        return {"label": self.label, "tensor": self.tensor, "replicas": self.replicas,
                "settings": dict(self.settings)}


def parse_grid(tensors: str, replicas: str = "1") -> list[Point]:
    """``"1,2,4"`` × ``"1"`` → points, in the order given."""
    def numbers(text: str, name: str) -> list[int]:
        try:
            values = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ConfigError(f"{name} must be comma-separated whole numbers, got {text!r}") from None
        if not values or any(v < 1 for v in values):
            raise ConfigError(f"{name} must list numbers of at least 1, got {text!r}")
        return values
    return [Point(t, r) for t in numbers(tensors, "--tensor") for r in numbers(replicas, "--replicas")]


def cross_with_settings(layouts: Sequence[Point], settings_axes: Sequence[axes.Axis]) -> list[Point]:
    """The grid: every layout × every combination of the settings axes, layouts slowest."""
    return [replace(layout, settings=combo) for layout in layouts for combo in axes.grid(settings_axes)]
