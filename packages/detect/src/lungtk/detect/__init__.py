"""lungtk.detect: NoduleNet detection, anchors and 3D NMS, Models Genesis pre-training, FROC/CPM."""
