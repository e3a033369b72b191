"""Machinery shared by the embedding-compression methods."""
