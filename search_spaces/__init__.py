"""The algorithms: pure PyTorch / Optuna / NumPy, no Django (see base.py for the contract)."""
