"""Distil a BERT/DistilBERT masked-LM teacher into a DistilBertForMaskedLM student, as DistilBERT was made.

`python -m model_export.distill TEACHER CORPUS... --out DIR`; see docs/training.md. Modules, in
the order a run uses them: config (options), teacher (load and check), data (corpus, batches,
masking), student (initialisation, freezing), losses, loop (the optimizer step and its state),
evaluate (held-out accuracy), run (the stages, checkpoints and the output directory).
"""
