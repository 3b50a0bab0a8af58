"""Generators of the shipped SYNTHETIC samples: seeded, byte-for-byte reproducible, no real data."""
