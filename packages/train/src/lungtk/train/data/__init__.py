"""Patch data for training: scans and labels from a data-set index, targets, samplers and the dataset."""
