"""Dependency aliases for the routes: one per resource the lifespan opens (see main.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from evaluation_api.config import Settings
from evaluation_api.evaluations.flow import Evaluator
from evaluation_api.identity.access import Identity
from evaluation_api.model_client.client import ModelClient
from evaluation_api.observability.logs_and_metrics import request_id_var
from evaluation_api.privacy.encryption import DataKeys
from evaluation_api.records.writer import RecordWriter


# async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request per
# dependency on the hottest path.
async def get_evaluator(request: Request) -> Evaluator:
    evaluator: Evaluator = request.app.state.evaluator
    return evaluator


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_model_client(request: Request) -> ModelClient:
    """The live model version's client (MODEL_SERVICE_URL's unless a promotion chose another service)."""
    model: ModelClient = request.app.state.evaluator.live_client()
    return model


async def get_identity(request: Request) -> Identity:
    identity: Identity = request.app.state.identity
    return identity


async def get_record_writer(request: Request) -> RecordWriter:
    writer: RecordWriter = request.app.state.record_writer
    return writer


async def get_data_keys(request: Request) -> DataKeys:
    keys: DataKeys = request.app.state.data_keys
    return keys


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_request_id() -> str:
    return request_id_var.get()


EvaluatorDep = Annotated[Evaluator, Depends(get_evaluator)]
EngineDep = Annotated[Engine, Depends(get_engine)]
DataKeysDep = Annotated[DataKeys, Depends(get_data_keys)]
ModelClientDep = Annotated[ModelClient, Depends(get_model_client)]
IdentityDep = Annotated[Identity, Depends(get_identity)]
RecordWriterDep = Annotated[RecordWriter, Depends(get_record_writer)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
