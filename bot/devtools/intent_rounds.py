"""The labelled rounds the second reader is trained on, and where each blind round's rules
are in git: data only, so tests can read it without importing scikit-learn."""

from __future__ import annotations

# Sections of tests/data/intent_labelled_en.yaml used for training, in the order written.
SECTIONS = (
    "messages",
    "heldout",
    "heldout_2",
    "heldout_3",
    "heldout_4",
    "heldout_5",
    "heldout_6",
    "heldout_7",
    "heldout_8",
    "heldout_9",
    "heldout_10",
    "heldout_11",
    "heldout_12",
    "heldout_13",
    "heldout_14",
    "heldout_15",
    "heldout_16",
)
# Commits whose PARENT holds the rules as they were when each blind round was written.
ROUND_COMMITS = {
    "heldout_2": "736a869",
    "heldout_3": "a468958",
    "heldout_4": "c21527c",
    "heldout_5": "2d47e28",
    "heldout_6": "e076b16",
    "heldout_7": "5e8f19c",
    "heldout_8": "e8cb3de",
    "heldout_9": "6dcf201",
    "heldout_10": "4350f8b",
    "heldout_11": "9d19d89",
    "heldout_12": "f712f1e",
    "heldout_13": "bdf2193",
    "heldout_14": "84a1aa1",
    "heldout_15": "2a5b626",
    "heldout_16": "2b49af9",
}
