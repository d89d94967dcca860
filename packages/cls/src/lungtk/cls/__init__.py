"""lungtk.cls: Nodule, malignancy, texture and pathology classifiers for lungtk."""
