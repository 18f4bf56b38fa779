"""Run by test_settings_env.py in a pytest of its own, with settings set in its environment."""

from evaluation_api.config import Settings


def test_every_setting_is_its_default() -> None:
    assert Settings().model_dump() == Settings.model_construct().model_dump()
