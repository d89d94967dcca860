"""lungtk.seg: Lung-nodule segmentation networks, sliding-window and TTA inference, ensembles, candidate grouping."""
