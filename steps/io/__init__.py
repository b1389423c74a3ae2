"""Where runs and models live: MLflow tracking, the model registry, the artifact store."""
