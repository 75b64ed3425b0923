"""The catalogue of named corpora: fetching, verifying and preparing them."""
