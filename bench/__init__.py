"""Benchmarks of makd against the paper's way of distilling (an HF Trainer with the teacher in every step).

Not part of the product: `make bench` runs every script here and writes results/bench/. See results/bench/README.md.
"""
