"""Private implementation; the public API is re-exported by ``jaxattn``."""
