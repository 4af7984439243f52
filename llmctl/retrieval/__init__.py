"""Retrieval: documents with ACLs -> chunks -> embeddings -> an index searched with the caller's
groups as a prefilter. Import the submodules; this package imports nothing heavy on purpose.
Where an index lives is ``llmctl.state.StackState.index_dir``."""
