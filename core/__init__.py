"""FeatherFace core: models, attention layers, anchors, box coding, data and losses.

`core` never imports `train`, `eval` or `dashboard` (nor streamlit): dependencies point one way.
"""
