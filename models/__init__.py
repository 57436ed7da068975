"""leadlift: models."""
