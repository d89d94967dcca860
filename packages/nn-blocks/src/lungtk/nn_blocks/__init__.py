"""lungtk.nn_blocks: Layer factories, residual blocks, 3D CBAM / Triplet / Quartet attention, norms and losses for lungtk networks."""
