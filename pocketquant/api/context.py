"""The typed context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass

import strawberry

from pocketquant.resources import Resources


@dataclass(frozen=True, slots=True)
class Context:
    resources: Resources


Info = strawberry.Info[Context, None]
