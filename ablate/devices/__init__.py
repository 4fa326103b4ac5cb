"""Device profiles: a per-op cost model fitted to measured latencies, and its predictions.

``fit_profile`` (fit.py) chooses and fits the model; ``predict_records`` (predict.py)
predicts; profiles are read and written by profile.py; rows come from observations.py.
"""
