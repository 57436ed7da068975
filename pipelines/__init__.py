"""leadlift: pipelines."""
