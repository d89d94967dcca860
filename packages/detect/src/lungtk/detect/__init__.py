"""lungtk.detect: nodule detection (NoduleNet) and its evaluation (FROC / CPM)."""
