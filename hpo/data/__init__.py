"""Shipped data (synthetic samples) and the generators that make them (hpo.data.synth)."""
