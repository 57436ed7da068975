"""leadlift: features."""
