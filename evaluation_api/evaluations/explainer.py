"""Each evaluation's explanation (decisioning/explanation.py), from the parameters of the model that
decided it, which the API learns from the model service's GET /metadata.

The parameters arrive with the drift monitor's fetch of /metadata (main.py), which runs at start and
again when another model version answers: one fetch, two readers. Until they arrive, and while the
model that answers is not the one they describe, an evaluation's explanation is None (the record and
the answer say `null`), never another model's. A model version in the change-control registry brings
its own parameters (its /metadata, kept when it was registered): `learn_version`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from contract import Decision, Figures
from decisioning.explanation import Geometry, explain
from decisioning.policy import Policy

logger = logging.getLogger(__name__)


class Explainer:
    def __init__(self) -> None:
        self.geometry: Geometry | None = None
        self.problem: str | None = None  # why the last /metadata answer could not be used, if it could not
        self.by_version: dict[str, Geometry] = {}  # registered model versions' (live, pending, challenger)

    def learn(self, metadata: Mapping[str, Any]) -> None:
        """Take the parameters of the model in this /metadata answer (or none, if it has none usable)."""
        try:
            self.geometry, self.problem = Geometry.from_metadata(metadata), None
        except ValueError as exc:
            logger.warning("decisions will not be explained: %s", exc)
            self.geometry, self.problem = None, str(exc)
        else:
            logger.info("explanations use model version %s", self.geometry.model_version)

    def learn_version(self, version: str, metadata: Mapping[str, Any]) -> None:
        """The parameters of a registered model version (once per version)."""
        if version in self.by_version:
            return
        try:
            geometry = Geometry.from_metadata(metadata)
        except ValueError as exc:
            logger.warning("model version %s will not be explained: %s", version, exc)
            return
        if geometry.model_version == version:
            self.by_version[version] = geometry

    def explain(
        self, policy: Policy, figures: Figures, segment_id: int, decision: Decision, model_version: str
    ) -> dict[str, Any] | None:
        """decisioning.explanation.explain's stored form (describe() gives its sentences), on the policy
        that made the decision."""
        geometry = self.geometry
        if geometry is None or geometry.model_version != model_version:
            geometry = self.by_version.get(model_version)
        if geometry is None:
            return None
        return explain(geometry, policy, figures, segment_id, decision)
