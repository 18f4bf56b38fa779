"""The model services an API process calls: MODEL_SERVICE_URL's, and one per registered model version
that is live or pending (evaluation_api/releases/). Each keeps its own connections, retry budget and
breaker, so a candidate's service that fails never opens the live one's breaker."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry import trace

from evaluation_api.config import Settings
from evaluation_api.model_client.client import ModelClient


class ModelServices:
    def __init__(self, settings: Settings, default: ModelClient, *, tracer: trace.Tracer | None = None) -> None:
        self._settings, self._tracer = settings, tracer
        self.default = default
        self._clients: dict[str, ModelClient] = {self.url(str(settings.model_service_url)): default}

    @staticmethod
    def url(value: str) -> str:
        return value.rstrip("/")

    def known_urls(self) -> list[str]:
        """The services a model version may be registered from: MODEL_SERVICE_URL and the candidates'."""
        urls = [str(self._settings.model_service_url), *map(str, self._settings.candidate_model_service_urls)]
        return list(dict.fromkeys(self.url(u) for u in urls))

    def client(self, service_url: str | None) -> ModelClient:
        """The client of `service_url` (None: MODEL_SERVICE_URL's), made on first use."""
        if service_url is None:
            return self.default
        key = self.url(service_url)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = ModelClient.from_settings(self._settings, tracer=self._tracer, base_url=key)
        return client

    async def metadata_of_each(self) -> list[tuple[str, dict[str, Any] | Exception]]:
        """Every known service's /metadata (or why not), asked at once: registration looks for a version."""
        urls = self.known_urls()
        answers = await asyncio.gather(*(self.client(u).metadata() for u in urls), return_exceptions=True)
        return [
            (url, answer if isinstance(answer, dict | Exception) else Exception(str(answer)))
            for url, answer in zip(urls, answers, strict=True)
        ]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
