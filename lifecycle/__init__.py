"""Model lifecycle: retraining on production labels and the canary statistics that judge a candidate."""
