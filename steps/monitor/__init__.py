"""Drift monitoring: the champion's reference sample, the inference-log window reader, the
per-column measurement (Evidently) and the pure drift policy. See README.md here."""
