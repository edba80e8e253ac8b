"""File names inside a packaged model (build/registry/<training>/artifacts/), shared by packing and registering."""

SPEC_FILE, HEAD_FILE = "model.json", "head.pt"
CARD_JSON, CARD_MD = "model_card.json", "model_card.md"
ARTIFACTS = "artifacts"  # where mlflow.pyfunc.save_model puts a model's artifacts
