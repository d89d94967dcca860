"""lungtk.fleischner: 2017 Fleischner follow-up recommendations, LNDb scoring, learned predictor and agreement metrics."""
