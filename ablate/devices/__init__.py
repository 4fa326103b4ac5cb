"""Device profiles: a per-op cost model fitted to measured latencies, and its predictions.

``fit_profile`` (fit.py) chooses and fits the model; ``predict_records`` (predict.py)
predicts; profiles are read and written by profile.py; rows come from observations.py.
"""

# `--prior`: predict with the profile as fitted, its priors standing in for the rates its rows
# left unresolved (`stated`), or with its raw fit, those rates where the fit left them (`none`).
# Here, not in profile.py, so that the commands can name the choices without importing torch.
PRIOR_CHOICES = ("stated", "none")
