"""The credit-card segmentation model: training, its model card and its import into BentoML's store."""

from pathlib import Path

from contract import CSV_COLUMNS, FEATURE_NAMES, MODEL_NAME, SEGMENTS

__all__ = [
    "CANDIDATES_DIR",
    "CARD_PATH",
    "CSV_COLUMNS",
    "FEATURES",
    "MODELS_DIR",
    "MODEL_NAME",
    "N_SEGMENTS",
    "PICKLE_PATH",
]

MODELS_DIR = Path(__file__).resolve().parent
PICKLE_PATH = MODELS_DIR / "modelo_cluster_cartao_credito.pkl"
CARD_PATH = MODELS_DIR / "model_card.json"
# Where `make model` puts a newly trained model, one directory per version (git-ignored, like all of var/).
CANDIDATES_DIR = MODELS_DIR.parent / "var" / "candidates"

# The model's name, inputs (in the pipeline's order) and their CSV columns: the contract's.
FEATURES: tuple[str, ...] = FEATURE_NAMES
N_SEGMENTS = len(SEGMENTS)
