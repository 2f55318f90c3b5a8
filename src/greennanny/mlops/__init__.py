"""MLOps for the forecasting models: registry, artifacts, audit (issue 6; design 005)."""
