"""The paper's published numbers, shipped as package data (see README.md beside this file)."""
