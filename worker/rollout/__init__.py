"""Model lifecycle: hot swap of the serving model (``controller.py``) behind a validation gate (``gate.py``), and
shadow mode (``shadow.py``); their metrics (``metrics.py``). README "Rolling out a model".

The switch itself happens in the inference stage, at a batch boundary (``worker/stream/common/swap.py``). Serving code:
never imports ``training``.
"""
