"""Committee-driven active learning: explore with MD, select frames the committee disagrees on, label them with
DFT, retrain (warm start), repeat."""
