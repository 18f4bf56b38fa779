"""The credit-card segmentation model: training, its model card and its import into BentoML's store."""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
PICKLE_PATH = MODELS_DIR / "modelo_cluster_cartao_credito.pkl"
CARD_PATH = MODELS_DIR / "model_card.json"

# Name of the model in the BentoML model store (and of the model in every decision record).
MODEL_NAME = "credit_card_segmentation"

# The model's inputs, in the order the pipeline expects them, and the CSV columns they come from.
FEATURES: tuple[str, ...] = ("balance", "purchases", "cash_advance", "credit_limit", "payments")
CSV_COLUMNS: dict[str, str] = {
    "balance": "BALANCE",
    "purchases": "PURCHASES",
    "cash_advance": "CASH_ADVANCE",
    "credit_limit": "CREDIT_LIMIT",
    "payments": "PAYMENTS",
}
N_SEGMENTS = 5
