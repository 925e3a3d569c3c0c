"""The one container image every template and component runs (the project installed, plus hera and kfp)."""

import os

DEFAULT_IMAGE = "quay.io/osft-pipeline/osft-pipeline:0.1.0"


def image() -> str:
    """The image reference: ``OSFT_PIPELINE_IMAGE`` when set at compile time, else the release default."""
    return os.environ.get("OSFT_PIPELINE_IMAGE", DEFAULT_IMAGE)
