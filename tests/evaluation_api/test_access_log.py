"""uvicorn's `--no-access-log` holds once the app has configured logging (make run starts it so)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from evaluation_api.observability.logs_and_metrics import configure_logging

ACCESS = "uvicorn.access"


@pytest.fixture
def access_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(ACCESS)
    root = logging.getLogger()
    saved = (list(logger.handlers), logger.propagate, list(root.handlers), root.level)
    try:
        yield logger
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        root.handlers = saved[2]
        root.setLevel(saved[3])


def test_no_access_log_stays_off(access_logger: logging.Logger) -> None:
    # What uvicorn's Config does for --no-access-log, before it calls the app factory.
    access_logger.handlers = []
    access_logger.propagate = False

    configure_logging("INFO")

    assert not access_logger.hasHandlers()  # uvicorn writes an access line only when it has one


def test_an_enabled_access_log_goes_through_the_json_handler(access_logger: logging.Logger) -> None:
    access_logger.handlers = [logging.StreamHandler()]  # uvicorn's own, plain text
    access_logger.propagate = False

    configure_logging("INFO")

    assert access_logger.handlers == [] and access_logger.propagate
    assert access_logger.hasHandlers()
