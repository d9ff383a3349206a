"""dvtr-data: build drone video-text retrieval datasets from raw flights, and score retrieval models on them."""

__version__ = "0.1.0"
