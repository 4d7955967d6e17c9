"""Vector retrieval over faiss: item vectors from trained models and text vectors from a sentence encoder."""

from recagent.tools.index.text_encoder import EncoderUnavailableError, TextEncoder
from recagent.tools.index.vector_index import IndexConfig, IndexLoadError, VectorIndex

__all__ = ["EncoderUnavailableError", "IndexConfig", "IndexLoadError", "TextEncoder", "VectorIndex"]
